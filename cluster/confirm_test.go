package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

func TestNumbering(t *testing.T) {
	for _, tc := range []struct {
		name     string
		issue    int
		complete []uint64
		want     []uint64 // the number up to which all have completed, after each
	}{
		{"in order", 3, []uint64{1, 2, 3}, []uint64{1, 2, 3}},
		{"out of order", 4, []uint64{2, 4, 1, 3}, []uint64{0, 0, 2, 4}},
		{"twice, and unknown", 2, []uint64{1, 1, 7, 2}, []uint64{1, 1, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q numbering
			for range tc.issue {
				q.next()
			}
			for i, k := range tc.complete {
				if got := q.complete(k); got != tc.want[i] {
					t.Fatalf("complete(%d) = %d, want %d", k, got, tc.want[i])
				}
			}
			if k := q.next(); k != uint64(tc.issue)+1 {
				t.Fatalf("next number %d, want %d", k, tc.issue+1)
			}
		})
	}
}

// TestClusterQuorumAckForwarded: with persistence_sync always, a QoS 1
// message published on n1 for an offline persistent session held on n2
// is acknowledged only once n2 confirms that it stored it, on its disk and
// on the state stream's quorum [MQTT-4.3.2-2: the PUBACK means the
// receiver has taken ownership of the message]. With n2 cut off, the
// PUBACK is held; when the links come back, n2 confirms (resumed), or,
// the forward lost with its connection (reset), n1 gives up on n2's
// answer and disconnects the publisher, which publishes again
// [MQTT-4.4.0-1]. The subscriber, resuming on n3, gets every message
// acknowledged.
func TestClusterQuorumAckForwarded(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := "resume"
		if reset {
			name = "reconnect"
		}
		t.Run(name, func(t *testing.T) { testQuorumAckForwarded(t, reset) })
	}
}

func testQuorumAckForwarded(t *testing.T, reset bool) {
	nodes, l := startClusterLinkedWith(t, 3, nil, func(tn *testNode) {
		tn.persist, tn.db = true, t.TempDir()
		tn.cfg = func(c *Config) { c.DeadAfter = 30 * time.Second } // a cut short of a death
	})
	n1, n2 := nodes[0], nodes[1]

	sub, _ := connectSession(t, n2.addr, "qf-sub", true, 600)
	subscribe(t, sub, nil, codec.Subscription{Filter: []byte("qf/#"), QoS: 1})
	if err := sub.Disconnect(codec.Success, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the subscriber offline on n2", func() bool { return n2.b.Stats.ClientsConnected.Load() == 0 })
	pubOpts := client.Options{Addr: n1.addr, ClientID: "qf-pub", Version: codec.Version5, CleanStart: true, MaxInflight: 100}
	pub, _ := connectWith(t, pubOpts)

	// The cluster whole: acks come, in order, each once n2 confirmed.
	const before = 50
	publishInOrder(t, pub, "qf/m", before)
	if a := n1.node.conf.asked.Load(); a == 0 {
		t.Fatal("n1 asked n2 for no confirmation")
	}

	// n2 cut off: n1 cannot know that n2 has the message.
	l.cut(1)
	done := make(chan error, 1)
	cut := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		done <- pub.Publish(ctx, &client.Message{Topic: []byte("qf/m"), Payload: []byte("cut"), QoS: 1})
	}()
	select {
	case err := <-done:
		t.Fatalf("PUBACK (err %v) while the subscriber's node is cut off", err)
	case <-time.After(3 * time.Second):
	}
	l.heal(reset)
	select {
	case err := <-done:
		if err != nil {
			if !reset {
				t.Fatalf("publish after the heal: %v", err)
			}
			// Not confirmed: published again.
			t.Logf("publisher: %v (%v after the cut); publishing again", err, time.Since(cut).Round(time.Millisecond))
			pub2, _ := connectRetry(t, pubOpts)
			publish(t, pub2, &client.Message{Topic: []byte("qf/m"), Payload: []byte("cut"), QoS: 1})
		} else {
			t.Logf("PUBACK %v after the cut", time.Since(cut).Round(time.Millisecond))
		}
	case <-time.After(60 * time.Second):
		t.Fatal("neither a PUBACK nor a disconnection within 60 s of the heal")
	}

	// Taken over on n3 with every acknowledged message, in order.
	sub2, in := connectRetry(t, sessionOpts("qf-sub", nodes[2].addr))
	if !sub2.Connack().SessionPresent {
		t.Fatal("session not present on n3")
	}
	got := in.wait(t, before+1, 30*time.Second)
	for i, g := range got[:before] {
		if g.payload != fmt.Sprint(i) {
			t.Fatalf("message %d: %q", i, g.payload)
		}
	}
	if g := got[before]; g.payload != "cut" {
		t.Fatalf("message %d: %q, want the one published during the cut", before, g.payload)
	}
}

// TestClusterQuorumAckVoidMixed: a QoS 1 message forwarded to n2 (cut off)
// and queued for an offline session on n1 itself waits for two numbers: n2's
// confirmation (handed out first: n2's route is a literal filter, matched
// before n1's wildcard) and n1's own replicated write. n2 never confirms,
// so the PUBACK must never come: n1 voids the confirmation and the
// publisher is disconnected, to publish again [MQTT-4.3.2-2][MQTT-4.4.0-1].
func TestClusterQuorumAckVoidMixed(t *testing.T) {
	nodes, l := startClusterLinkedWith(t, 3, nil, func(tn *testNode) {
		tn.persist, tn.db = true, t.TempDir()
		tn.cfg = func(c *Config) { c.DeadAfter = 60 * time.Second } // only the confirmation's timeout voids
	})
	n1, n2 := nodes[0], nodes[1]
	for _, s := range []struct {
		addr, id, filter string
	}{{n2.addr, "qv-remote", "qv/m"}, {n1.addr, "qv-local", "qv/#"}} {
		c, _ := connectSession(t, s.addr, s.id, true, 600)
		subscribe(t, c, nil, codec.Subscription{Filter: []byte(s.filter), QoS: 1})
		if err := c.Disconnect(codec.Success, nil); err != nil {
			t.Fatal(err)
		}
	}
	pub, _ := connectWith(t, client.Options{Addr: n1.addr, ClientID: "qv-pub", Version: codec.Version5, CleanStart: true})
	// The cluster whole: acknowledged once n2 confirmed.
	waitFor(t, 20*time.Second, "a message forwarded to n2 with a confirmation", func() bool {
		publish(t, pub, &client.Message{Topic: []byte("qv/m"), Payload: []byte("warm"), QoS: 1})
		return n1.node.conf.asked.Load() > 0
	})

	l.cut(1)
	defer l.heal(true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*confirmTimeout)
	defer cancel()
	err := pub.Publish(ctx, &client.Message{Topic: []byte("qv/m"), Payload: []byte("cut"), QoS: 1})
	if err == nil {
		t.Fatalf("PUBACK for a message n2 never confirmed (confirmations voided: %d)", n1.node.conf.voided.Load())
	}
	if ctx.Err() != nil {
		t.Fatalf("neither a PUBACK nor a disconnection within %v: %v", 3*confirmTimeout, err)
	}
	t.Logf("publisher: %v", err)
}

// TestClusterQuorumAckDropped: a forwarded batch that n2's NATS client
// drops (a slow consumer: its pending bytes over the limit, as a large
// batch behind a backlog makes them) never reached n2's session, though
// the 9-byte "K" after it does. n2 must not confirm it: the PUBACK would
// acknowledge a message no node has [MQTT-4.3.2-2].
func TestClusterQuorumAckDropped(t *testing.T) {
	nodes, _ := startClusterLinkedWith(t, 3, nil, func(tn *testNode) {
		tn.persist, tn.db = true, t.TempDir()
	})
	n1, n2 := nodes[0], nodes[1]
	sub, _ := connectSession(t, n2.addr, "qd-sub", true, 600)
	subscribe(t, sub, nil, codec.Subscription{Filter: []byte("qd/#"), QoS: 1})
	if err := sub.Disconnect(codec.Success, nil); err != nil {
		t.Fatal(err)
	}
	pub, _ := connectWith(t, client.Options{Addr: n1.addr, ClientID: "qd-pub", Version: codec.Version5, CleanStart: true})
	waitFor(t, 20*time.Second, "a message forwarded to n2 with a confirmation", func() bool {
		publish(t, pub, &client.Message{Topic: []byte("qd/m"), Payload: []byte("warm"), QoS: 1})
		return n1.node.conf.asked.Load() > 0
	})

	fwd := n2.node.fwdSub.Load()
	if err := fwd.SetPendingLimits(-1, 512); err != nil { // a batch of more is dropped, a "K" is not
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*confirmTimeout)
	defer cancel()
	err := pub.Publish(ctx, &client.Message{Topic: []byte("qd/m"), Payload: make([]byte, 2048), QoS: 1})
	dropped, _ := fwd.Dropped()
	if err == nil {
		t.Fatalf("PUBACK for a message n2 dropped (%d dropped by n2's subscription)", dropped)
	}
	if ctx.Err() != nil {
		t.Fatalf("neither a PUBACK nor a disconnection within %v: %v", 3*confirmTimeout, err)
	}
	t.Logf("publisher: %v (%d dropped by n2)", err, dropped)
}

// TestClusterQuorumAckForwardedWaits: the node that holds the offline
// session confirms a forwarded message only once its replicated copy is
// written: with n2's state writer held, n1 gives no PUBACK; once it goes
// on, the PUBACK comes [MQTT-4.3.2-2].
func TestClusterQuorumAckForwardedWaits(t *testing.T) {
	nodes := startClusterWithEach(t, 3, nil, func(tn *testNode) { tn.persist, tn.db = true, t.TempDir() })
	n1, n2 := nodes[0], nodes[1]

	sub, _ := connectSession(t, n2.addr, "qw-sub", true, 600)
	subscribe(t, sub, nil, codec.Subscription{Filter: []byte("qw/#"), QoS: 1})
	if err := sub.Disconnect(codec.Success, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the offline session's state written on n2", func() bool {
		return n2.b.Stats.ClientsConnected.Load() == 0 && n2.node.state.unwritten.Load() == 0
	})
	pub, _ := connectWith(t, client.Options{Addr: n1.addr, ClientID: "qw-pub", Version: codec.Version5, CleanStart: true, MaxInflight: 10})
	publish(t, pub, &client.Message{Topic: []byte("qw/m"), Payload: []byte("open"), QoS: 1})

	gate := make(chan struct{})
	n2.node.state.gate.Store(&gate)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		done <- pub.Publish(ctx, &client.Message{Topic: []byte("qw/m"), Payload: []byte("held"), QoS: 1})
	}()
	waitFor(t, 10*time.Second, "n2 to queue the message for replication", func() bool { return n2.node.state.unwritten.Load() > 0 })
	select {
	case err := <-done:
		t.Fatalf("PUBACK (err %v) before n2 wrote the message's replicated copy", err)
	case <-time.After(2 * time.Second):
	}
	n2.node.state.gate.Store(nil)
	close(gate)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no PUBACK once n2 wrote the copy")
	}
}
