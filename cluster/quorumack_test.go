package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestClusterQuorumAck: with persistence_sync always (a local store on
// every node, QuorumAcks), a QoS 1 PUBLISH for an offline persistent
// session is acknowledged only once its replicated copy is stored on the
// state stream's quorum [MQTT-4.3.2-2: the PUBACK means the receiver has
// taken ownership of the message]. With the cluster whole, acks come (in
// order); with the publisher's node cut off from the others, the PUBACK
// is held; once the links come back (resumed, or reset so that NATS
// connects again) it arrives, and the subscriber, resuming on another node,
// gets every acknowledged message, in order [MQTT-4.6.0-2].
func TestClusterQuorumAck(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := "resume"
		if reset {
			name = "reconnect"
		}
		t.Run(name, func(t *testing.T) { testQuorumAck(t, reset) })
	}
}

func testQuorumAck(t *testing.T, reset bool) {
	nodes, l := startClusterLinkedWith(t, 3, nil, func(tn *testNode) {
		tn.persist, tn.db = true, t.TempDir()
		// The cut below is short of a death: nobody takes n1's sessions
		// over (that case: TestClusterPartition).
		tn.cfg = func(c *Config) { c.DeadAfter = 30 * time.Second }
	})
	n1 := nodes[0]

	sub, _ := connectSession(t, n1.addr, "qa-sub", true, 600)
	subscribe(t, sub, nil, codec.Subscription{Filter: []byte("qa/#"), QoS: 1})
	if err := sub.Disconnect(codec.Success, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the subscriber offline on n1", func() bool { return n1.b.Stats.ClientsConnected.Load() == 0 })
	pub, _ := connectWith(t, client.Options{Addr: n1.addr, ClientID: "qa-pub", Version: codec.Version5, CleanStart: true, MaxInflight: 100})

	// With a quorum, acks come, in order.
	const before = 50
	publishInOrder(t, pub, "qa/m", before)

	// n1 cut off: the PUBLISH is stored on n1's disk, but not on a quorum.
	l.cut(0)
	done := make(chan error, 1)
	cut := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		done <- pub.Publish(ctx, &client.Message{Topic: []byte("qa/m"), Payload: []byte("cut"), QoS: 1})
	}()
	select {
	case err := <-done:
		t.Fatalf("PUBACK (err %v) while n1 is cut off from the quorum", err)
	case <-time.After(3 * time.Second):
	}
	l.heal(reset)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish after the heal: %v", err)
		}
		t.Logf("PUBACK %v after the cut, %v after the heal", time.Since(cut).Round(time.Millisecond),
			(time.Since(cut) - 3*time.Second).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		t.Fatal("no PUBACK within 60 s of the heal")
	}

	// The subscriber resumes on n2 (taken over from n1) with every
	// acknowledged message, in order.
	sub2, in := connectRetry(t, sessionOpts("qa-sub", nodes[1].addr))
	if !sub2.Connack().SessionPresent {
		t.Fatal("session not present on n2")
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

// publishInOrder publishes n QoS 1 messages ("0", "1", ...) on topic with
// n in flight and checks that their PUBACKs come, in order
// [MQTT-4.6.0-2], within a minute.
func publishInOrder(t *testing.T, pub *client.Client, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acked := make(chan int, n)
	for i := range n {
		if err := pub.PublishAsync(ctx, &client.Message{Topic: []byte(topic), Payload: []byte(fmt.Sprint(i)), QoS: 1},
			func(err error) {
				if err != nil {
					t.Errorf("publish %d: %v", i, err)
				}
				acked <- i
			}); err != nil {
			t.Fatal(err)
		}
	}
	for want := range n {
		select {
		case i := <-acked:
			if i != want {
				t.Fatalf("PUBACK for message %d, want %d (out of order)", i, want)
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d PUBACKs with the cluster whole", want, n)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// sessionOpts are the options of a v5 client resuming session id
// (clean start 0, expiry 600 s).
func sessionOpts(id, addr string) client.Options {
	o := client.Options{Addr: addr, ClientID: id, Version: codec.Version5, MaxInflight: 100}
	o.Props.SessionExpiry = 600
	o.Props.Set(codec.PropSessionExpiry)
	return o
}

// TestClusterQuorumAckTakenOver: a cut that outlasts DeadAfter. The
// majority takes the publisher's node for dead and takes over the offline
// session (with what was replicated before the cut); the message published
// on the cut-off node meanwhile, held unacknowledged, is then stored only
// where the session no longer is. After the heal its PUBACK never comes:
// the publisher is disconnected (v5 0x89) and, publishing again as MQTT
// has it [MQTT-4.4.0-1], reaches the session where it is now; nothing
// acknowledged is lost.
func TestClusterQuorumAckTakenOver(t *testing.T) {
	nodes, l := startClusterLinkedWith(t, 3, nil, func(tn *testNode) { tn.persist, tn.db = true, t.TempDir() })
	n1, n2 := nodes[0], nodes[1]

	sub, _ := connectSession(t, n1.addr, "qt-sub", true, 600)
	subscribe(t, sub, nil, codec.Subscription{Filter: []byte("qt/#"), QoS: 1})
	if err := sub.Disconnect(codec.Success, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the subscriber offline on n1", func() bool { return n1.b.Stats.ClientsConnected.Load() == 0 })
	pub, _ := connectWith(t, client.Options{Addr: n1.addr, ClientID: "qt-pub", Version: codec.Version5, CleanStart: true, MaxInflight: 100})
	publish(t, pub, &client.Message{Topic: []byte("qt/m"), Payload: []byte("before"), QoS: 1})

	l.cut(0)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		done <- pub.Publish(ctx, &client.Message{Topic: []byte("qt/m"), Payload: []byte("cut"), QoS: 1})
	}()
	waitFor(t, 60*time.Second, "the majority takes the session over", func() bool {
		_, ok2 := n2.b.SessionQueued("qt-sub")
		_, ok3 := nodes[2].b.SessionQueued("qt-sub")
		return ok2 || ok3
	})
	select {
	case err := <-done:
		t.Fatalf("PUBACK (err %v) while n1 is cut off from the quorum", err)
	default:
	}
	owner := n2
	if _, ok := n2.b.SessionQueued("qt-sub"); !ok {
		owner = nodes[2]
	}
	l.heal(false)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("PUBACK for a message stored only where the session no longer is")
		}
		t.Logf("publisher: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the publisher neither acknowledged nor disconnected within 60 s of the heal")
	}
	if !strings.Contains(n1.logs.String(), "asked to send them again") {
		t.Error("n1 does not log the sessions it lost")
	}

	// Published again, on the node that holds the session now. Until n1
	// has checked its sessions against the registry (100-200 ms after the
	// heal), its stale copy of the session still takes forwards, and n1
	// answers a confirmation of what it queued there void: the owner then
	// disconnects this publisher too (0x89), and it publishes again.
	waitFor(t, 30*time.Second, "n1 to check its sessions against the registry", func() bool {
		return strings.Contains(n1.logs.String(), "against the registry after a partition")
	})
	for attempt := 1; ; attempt++ {
		pub2, _ := connectRetry(t, client.Options{Addr: owner.addr, ClientID: "qt-pub", Version: codec.Version5, CleanStart: true, MaxInflight: 100})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := pub2.Publish(ctx, &client.Message{Topic: []byte("qt/m"), Payload: []byte("cut"), QoS: 1})
		cancel()
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("publish on the owner, attempt %d: %v", attempt, err)
		}
		t.Logf("publish on the owner, attempt %d: %v", attempt, err)
	}
	sub2, in := connectRetry(t, sessionOpts("qt-sub", owner.addr))
	if !sub2.Connack().SessionPresent {
		t.Fatal("session not present where it was taken over")
	}
	got := in.wait(t, 2, 30*time.Second)
	if got[0].payload != "before" || got[1].payload != "cut" {
		t.Fatalf("got %q, %q; want before, cut", got[0].payload, got[1].payload)
	}
}
