package cluster

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/sys"
)

// testRelayBound: the old node keeps what it relays for a session until the
// new node has installed it, at most relay.max bytes: past that, messages
// for it are dropped, counted ($SYS cluster/messages/relay-dropped and
// publish/messages/dropped) and logged once; what was kept is delivered.
func testRelayBound(t *testing.T, nodes []*testNode) {
	old, slow, pubNode := nodes[0], nodes[1], nodes[2]
	const max = 8 << 10
	old.node.relay.mu.Lock()
	old.node.relay.max = max
	old.node.relay.mu.Unlock()
	slow.node.installDelay.Store(int64(2 * time.Second))
	t.Cleanup(func() {
		old.node.relay.mu.Lock()
		old.node.relay.max = 0
		old.node.relay.mu.Unlock()
		slow.node.installDelay.Store(0)
	})
	c, _ := connectSession(t, old.addr, "bound-mover", true, 600)
	subscribe(t, c, nil, codec.Subscription{Filter: []byte("rb/#"), QoS: 1})
	waitRoute(t, pubNode, old.name, "rb/#")
	relayed0, dropped0 := old.node.Stats.RelayedMsgs.Load(), old.node.Stats.RelayDropped.Load()

	// The takeover on the slow node: its CONNACK comes after the install.
	o := client.Options{Addr: slow.addr, ClientID: "bound-mover", Version: codec.Version5, MaxInflight: 100}
	o.Props.SessionExpiry = 600
	o.Props.Set(codec.PropSessionExpiry)
	moved, in := client.New(o), newInbox()
	moved.OnMessage = in.add
	t.Cleanup(func() { _ = moved.Close() })
	connected := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		connected <- moved.Connect(ctx)
	}()
	waitFor(t, 10*time.Second, "the old node handed the session over", func() bool {
		old.node.relay.mu.Lock()
		defer old.node.relay.mu.Unlock()
		m := old.node.relay.m["bound-mover"]
		return m != nil && m.cut
	})

	// What the publishing node still forwards to the old node meanwhile.
	const sent = 40
	pub, _ := connect(t, pubNode.addr, "bound-pub", codec.Version5)
	payload := bytes.Repeat([]byte{'x'}, 1<<10)
	for i := range sent {
		publish(t, pub, &client.Message{Topic: []byte("rb/" + strconv.Itoa(i)), Payload: payload, QoS: 1})
	}
	var kept, dropped int64
	waitFor(t, 10*time.Second, "the old node took every message", func() bool {
		kept = old.node.Stats.RelayedMsgs.Load() - relayed0
		dropped = old.node.Stats.RelayDropped.Load() - dropped0
		return kept+dropped == sent
	})
	if err := <-connected; err != nil {
		t.Fatalf("takeover on %s: %v", slow.name, err)
	}
	t.Logf("relay bound %d bytes: %d of %d messages of 1 KiB kept, %d dropped", max, kept, sent, dropped)
	if dropped == 0 || kept == 0 || kept*(1<<10) > max {
		t.Fatalf("kept %d, dropped %d of %d messages of 1 KiB with a bound of %d bytes", kept, dropped, sent, max)
	}
	// The kept ones are delivered, and only they.
	in.wait(t, int(kept), 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if got := len(in.snapshot()); got != int(kept) {
		t.Fatalf("the new session got %d messages, %d were kept", got, kept)
	}
	if n := strings.Count(old.logs.String(), `session "bound-mover": node `+slow.name+" has not installed it yet"); n != 1 {
		t.Fatalf("the drop is logged %d times, want once:\n%s", n, old.logs)
	}
	// $SYS says so.
	watch, sysIn := connect(t, old.addr, "bound-sys", codec.Version5)
	subscribe(t, watch, nil, codec.Subscription{Filter: []byte("$SYS/broker/cluster/messages/relay-dropped"), QoS: 0})
	sys.New(old.b, "test", time.Hour).Publish(time.Now())
	if m := waitTopic(t, sysIn, "$SYS/broker/cluster/messages/relay-dropped", 10*time.Second); m.payload != strconv.FormatInt(old.node.Stats.RelayDropped.Load(), 10) {
		t.Fatalf("$SYS/broker/cluster/messages/relay-dropped: %q, want %d", m.payload, old.node.Stats.RelayDropped.Load())
	}
}
