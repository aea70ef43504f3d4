package loop

import (
	"fmt"
	"testing"

	"github.com/midge-mqtt/midge/codec"
)

// TestSharedV5OneMemberPerGroup checks that each message goes to exactly one
// member of each shared subscription (identified by share name and filter)
// and to every plain subscriber (MQTT 5.0 section 4.8.2).
func TestSharedV5OneMemberPerGroup(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	g1 := tb.rawV5(t, "g1", nil)
	g2 := tb.rawV5(t, "g2", nil)
	h := tb.rawV5(t, "h", nil)
	other := tb.rawV5(t, "other", nil)
	plain := tb.rawV5(t, "plain", nil)
	g1.subscribe(1, codec.Subscription{Filter: []byte("$share/g/sh/+"), QoS: 1}, 0)
	g2.subscribe(1, codec.Subscription{Filter: []byte("$share/g/sh/+"), QoS: 1}, 0)
	h.subscribe(1, codec.Subscription{Filter: []byte("$share/h/sh/x"), QoS: 1}, 0)
	// Same share name, another filter: another shared subscription.
	other.subscribe(1, codec.Subscription{Filter: []byte("$share/g/sh/#"), QoS: 1}, 0)
	plain.subscribe(1, codec.Subscription{Filter: []byte("sh/x"), QoS: 1}, 0)

	const n = 20
	pub := tb.rawV5(t, "", nil)
	for i := 0; i < n; i++ {
		pub.publish("sh/x", fmt.Sprint(i), 1, uint16(i+1), nil)
	}
	// drain collects what a member got until it has been quiet for quietWait.
	drain := func(r *rawConn) []string {
		var got []string
		for {
			p, err := r.next(quietWait)
			if err != nil {
				return got
			}
			if p.Type != codec.PUBLISH {
				t.Fatalf("got %v", p.Type)
			}
			got = append(got, string(p.Payload))
			r.send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
		}
	}
	count := map[string]int{}
	for _, m := range append(drain(g1), drain(g2)...) {
		count[m]++
	}
	for i := 0; i < n; i++ {
		if c := count[fmt.Sprint(i)]; c != 1 {
			t.Errorf("message %d reached group g %d times, want 1", i, c)
		}
	}
	for name, r := range map[string]*rawConn{"h": h, "other": other, "plain": plain} {
		if got := drain(r); len(got) != n {
			t.Errorf("%s got %d messages, want %d", name, len(got), n)
		}
	}
}

// TestSharedV5NoRetained checks that subscribing to a shared subscription
// sends no retained messages (MQTT 5.0 section 4.8.2).
func TestSharedV5NoRetained(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	pub := tb.rawV5(t, "", nil)
	pub.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("shr"), Payload: []byte("kept"), Retain: true})
	pub.subscribe(1, codec.Subscription{Filter: []byte("shr")}, 0) // the retained message is stored
	pub.expect(codec.PUBLISH)
	r := tb.rawV5(t, "", nil)
	r.subscribe(1, codec.Subscription{Filter: []byte("$share/g/shr")}, 0)
	r.expectQuiet()
}

// TestSharedV5NoLocal checks that No Local on a shared subscription is a
// protocol error: DISCONNECT 0x82 [MQTT-3.8.3-4].
func TestSharedV5NoLocal(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r := tb.rawV5(t, "", nil)
	r.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
		Subscriptions: []codec.Subscription{{Filter: []byte("$share/g/t"), NoLocal: true}}})
	r.expectDisconnect(codec.ProtocolError)
}
