package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestClusterQuorumAckCoalesced: with persistence_sync always, the
// messages queued on n1 for two offline persistent sessions are published
// many at a time (100 in flight), so that a round of the state writer holds
// many for each session: they are replicated coalesced, several in one
// stream message ('N', never over the bound, 2 KiB here so that a round is
// split), and each PUBACK still comes only once its message is stored on
// the quorum [MQTT-4.3.2-2]. Then n1 is cut off while more are published:
// their writes fail and are published again, coalesced again, once the
// links come back, and their PUBACKs follow. Then n1 dies: both sessions,
// resumed on n3, get every acknowledged message, in order (the first copy
// of each; a write retried after its answer was lost may be stored twice,
// a duplicate as QoS 1 allows) [MQTT-4.6.0-2].
func TestClusterQuorumAckCoalesced(t *testing.T) {
	const limit = 2048
	nodes, l := startClusterLinkedWith(t, 3, nil, func(tn *testNode) {
		tn.persist, tn.db = true, t.TempDir()
		// The cut below (longer than stateAckTimeout) is short of a death.
		tn.cfg = func(c *Config) { c.DeadAfter = 15 * time.Second; c.stateBatchMax = limit }
	})
	n1 := nodes[0]
	for _, id := range []string{"co-a", "co-b"} {
		c, _ := connectSession(t, n1.addr, id, true, 600)
		filter := "co/#" // co-b: every message
		if id == "co-a" {
			filter = "co/a" // co-a: half
		}
		subscribe(t, c, nil, codec.Subscription{Filter: []byte(filter), QoS: 1})
		if err := c.Disconnect(codec.Success, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the subscribers offline on n1", func() bool { return n1.b.Stats.ClientsConnected.Load() == 0 })
	pub, _ := connectWith(t, client.Options{Addr: n1.addr, ClientID: "co-pub", Version: codec.Version5, CleanStart: true, MaxInflight: 100})

	pad := strings.Repeat("p", 100)
	var published []string // payloads, in order
	var topics []string
	// publishMany publishes messages from to to (not waiting for their
	// PUBACKs: as many in flight as the session allows) and answers each
	// PUBACK, or error, on acks.
	publishMany := func(from, to int) (acks chan error) {
		acks = make(chan error, to-from)
		ms := make([]*client.Message, 0, to-from)
		for i := from; i < to; i++ {
			topic := "co/a"
			if i%2 == 1 {
				topic = "co/b"
			}
			payload := fmt.Sprintf("%05d-%s", i, pad)
			published, topics = append(published, payload), append(topics, topic)
			ms = append(ms, &client.Message{Topic: []byte(topic), Payload: []byte(payload), QoS: 1})
		}
		go func() { // blocks while the in-flight window is full
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			for _, m := range ms {
				if err := pub.PublishAsync(ctx, m, func(err error) { acks <- err }); err != nil {
					acks <- err
				}
			}
		}()
		return acks
	}
	waitAcks := func(acks chan error, n int, what string) {
		t.Helper()
		for i := range n {
			select {
			case err := <-acks:
				if err != nil {
					t.Fatalf("%s: publish: %v", what, err)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("%s: %d of %d PUBACKs", what, i, n)
			}
		}
	}

	const whole, cut = 1000, 300
	waitAcks(publishMany(0, whole), whole, "cluster whole")
	checkCoalesced(t, n1, limit)

	l.cut(0)
	acks := publishMany(whole, whole+cut)
	select {
	case err := <-acks:
		t.Fatalf("PUBACK (err %v) while n1 is cut off from the quorum", err)
	case <-time.After(7 * time.Second): // past stateAckTimeout: the writes fail
	}
	l.heal(false)
	waitAcks(acks, cut, "after the heal")
	if n1.node.state.retried.Load() == 0 {
		t.Error("nothing written again after the cut")
	}
	t.Logf("n1: %d queued writes published again", n1.node.state.retried.Load())

	n1.kill(t)
	for _, id := range []string{"co-a", "co-b"} {
		var want []string
		for i, p := range published {
			if id == "co-b" || topics[i] == "co/a" {
				want = append(want, p)
			}
		}
		o := sessionOpts(id, nodes[2].addr)
		o.MaxInflight = 1000
		c, in := connectRetry(t, o) // once n1 is dead, its sessions are taken from the stream
		if !c.Connack().SessionPresent {
			t.Fatalf("%s: session not present on n3", id)
		}
		got := firstCopies(t, in, len(want), 60*time.Second)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: message %d is %.5s, want %.5s", id, i, got[i], want[i])
			}
		}
	}
}

// checkCoalesced reads n1's replicated queues: at least one stream message
// holds several queued messages, and none that does is over limit bytes.
func checkCoalesced(t *testing.T, n1 *testNode, limit int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var msgs, coalesced, records, max int
	filter := n1.node.prefix + "s.n1.>"
	for seq := uint64(1); ; {
		m, err := n1.node.state.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seq = m.Sequence + 1
		switch m.Data[0] {
		case 'M':
			msgs++
			records++
		case 'N':
			recs, err := appendCoalesced(nil, m.Data[1:])
			if err != nil {
				t.Fatalf("sequence %d: %v", m.Sequence, err)
			}
			msgs++
			coalesced++
			records += len(recs)
			if len(m.Data) > limit {
				t.Fatalf("sequence %d: a coalesced message of %d bytes, over %d", m.Sequence, len(m.Data), limit)
			}
			max = len(m.Data)
		}
	}
	t.Logf("n1's queues: %d queued messages in %d stream messages (%d coalesced, the last of %d bytes)", records, msgs, coalesced, max)
	if coalesced == 0 {
		t.Fatal("no queued messages coalesced")
	}
}

// firstCopies waits for n distinct payloads and returns them in the order
// of their first arrival.
func firstCopies(t *testing.T, in *inbox, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		seen := map[string]bool{}
		var out []string
		for _, m := range in.snapshot() {
			if !seen[m.payload] {
				seen[m.payload] = true
				out = append(out, m.payload)
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages within %v", len(out), n, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
