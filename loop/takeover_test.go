package loop

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/midge-mqtt/midge/codec"
)

// TestTakeoverAfterPublish: what a connection sent before another one took
// its client id over [MQTT-3.1.4-2] is handled before the takeover, even
// when the two are on two event loops and the first one's loop is busy:
// a retained PUBLISH the first sent is retained before the second
// subscribes (RETAIN 1, not a live copy to the new subscription). The
// first loop is held by a task while the first connection's PUBLISH and
// the second's CONNECT arrive; the second gets no CONNACK until the first
// has yielded (mosquitto's 04-retain-check-source-persist.py).
func TestTakeoverAfterPublish(t *testing.T) {
	tb := startBroker(t, nil)
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			id := fmt.Sprintf("order-%v", clean)
			topic := "order/" + id
			first := tb.v3Dial(t, codec.Version311)
			firstLoop := tb.loopOf(t, first.c.LocalAddr().String()) // before its CONNECT
			first.send(v3ConnectPacket(codec.Version311, id, clean, 0))
			first.expect(codec.CONNACK)
			second := tb.dialOtherLoop(t, firstLoop)
			release := holdLoop(t, firstLoop)
			defer release() // a failed test does not leave the loop held
			first.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte(topic), Payload: []byte("before"), Retain: true})
			second.send(v3ConnectPacket(codec.Version311, id, true, 0))
			second.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
				Subscriptions: []codec.Subscription{{Filter: []byte(topic)}}})
			// The takeover waits for the first connection's loop.
			second.expectQuiet()
			release()

			if ack := second.expect(codec.CONNACK); ack.ReasonCode != codec.Success || ack.SessionPresent {
				t.Fatalf("CONNACK code %d present %v, want 0, not present (clean start)", ack.ReasonCode, ack.SessionPresent)
			}
			second.expect(codec.SUBACK)
			second.expectPublish(topic, "before", 0, true)
			first.expectClosed()
			second.send(&codec.Packet{Type: codec.DISCONNECT})
			second.expectClosed()
		})
	}
}

// TestTakeoverGivenUp: a connection that asked the owner of its client id
// to yield, and is closed before it takes the session over (here: no
// CONNACK within the connect timeout, the owner's loop being held), leaves
// the owner as it was: still connected, served, and delivered to.
func TestTakeoverGivenUp(t *testing.T) {
	tb := startBroker(t, nil, func(c *Config) { c.ConnectTimeout = time.Second })
	first := tb.v3Dial(t, codec.Version311)
	firstLoop := tb.loopOf(t, first.c.LocalAddr().String()) // before its CONNECT
	first.send(v3ConnectPacket(codec.Version311, "given-up", true, 0))
	first.expect(codec.CONNACK)
	first.subscribe(1, "given/up", 0)
	second := tb.dialOtherLoop(t, firstLoop)
	release := holdLoop(t, firstLoop)
	defer release()
	second.send(v3ConnectPacket(codec.Version311, "given-up", true, 0))
	second.expectClosed() // parked (the first one's loop is held), then timed out
	release()

	first.send(&codec.Packet{Type: codec.PINGREQ})
	first.expect(codec.PINGRESP)
	pub, _ := tb.v3Connect(t, codec.Version311, "given-up-pub", true)
	pub.publish("given/up", "still here", 0, 0, false)
	first.expectPublish("given/up", "still here", 0, false)
}

// dialOtherLoop dials until a connection lands on a loop other than loop.
func (tb *testBroker) dialOtherLoop(t *testing.T, loop gnet.EventLoop) *v3Conn {
	t.Helper()
	for i := 0; i < 10; i++ {
		c := tb.v3Dial(t, codec.Version311)
		if tb.loopOf(t, c.c.LocalAddr().String()) != loop {
			return c
		}
	}
	t.Fatal("no connection landed on the other loop")
	return nil
}

// holdLoop keeps loop busy with a task until the returned release is
// called (more than once is fine): what arrives for its connections waits.
func holdLoop(t *testing.T, loop gnet.EventLoop) (release func()) {
	t.Helper()
	started, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	if err := loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		close(started)
		<-hold
		return nil
	})); err != nil {
		t.Fatalf("loop execute: %v", err)
	}
	<-started
	return release
}
