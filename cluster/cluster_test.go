package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestClusterBehaviour runs one three-node cluster (JetStream takes seconds
// to form on a loaded 2-core machine) through the cross-node rules.
func TestClusterBehaviour(t *testing.T) {
	nodes := startCluster(t, 3)
	// Each subtest's clients leave when it ends, their routes with them.
	addRoutes := func(t *testing.T, per ...int64) {
		for i := range nodes {
			waitRoutes(t, nodes[i:i+1], per[i])
		}
	}

	t.Run("CrossNodeQoS", func(t *testing.T) { testCrossNodeQoS(t, nodes) })
	t.Run("EdgeTopicsAndPayloads", func(t *testing.T) { testEdgeTopicsAndPayloads(t, nodes) })
	t.Run("DeadSenderChunks", func(t *testing.T) { testDeadSenderChunks(t, nodes) })
	t.Run("Retained", func(t *testing.T) { testRetained(t, nodes) })
	t.Run("Propagation", func(t *testing.T) { testPropagation(t, nodes) })
	t.Run("Bench", func(t *testing.T) { testBench(t, nodes) })
	t.Run("SharedExactlyOnce", func(t *testing.T) {
		// $share/g/sh/#: two members on n1, one on n2, one on n3. Each of
		// 10,000 messages published on n1 and n2 goes to exactly one
		// member cluster-wide (MQTT 5 §4.8.2), and every node gets some.
		const total = 10000
		waitRoutes(t, nodes, 0)
		var ins []*inbox
		for i, at := range []int{0, 0, 1, 2} {
			c, in := connect(t, nodes[at].addr, fmt.Sprintf("member%d", i), codec.Version5)
			subscribe(t, c, nil, codec.Subscription{Filter: []byte("$share/g/sh/#"), QoS: 1})
			ins = append(ins, in)
		}
		addRoutes(t, 2, 2, 2) // each node sees the group on the two others
		var wg sync.WaitGroup
		for p := range 2 {
			pub, _ := connect(t, nodes[p].addr, fmt.Sprintf("shpub%d", p), codec.Version5)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
				defer cancel()
				var acks sync.WaitGroup
				for i := p; i < total; i += 2 {
					acks.Add(1)
					err := pub.PublishAsync(ctx, &client.Message{Topic: []byte("sh/x"), Payload: []byte(strconv.Itoa(i)), QoS: 1},
						func(error) { acks.Done() })
					if err != nil {
						t.Errorf("publish %d: %v", i, err)
						return
					}
				}
				acks.Wait()
			}()
		}
		wg.Wait()
		seen := make([]int, total)
		deadline := time.Now().Add(60 * time.Second)
		for {
			clear(seen)
			n := 0
			for _, in := range ins {
				for _, m := range in.snapshot() {
					i, _ := strconv.Atoi(m.payload)
					seen[i]++
					n++
				}
			}
			if n >= total || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // a duplicate would come now
		clear(seen)
		per := make([]int, len(ins))
		for k, in := range ins {
			for _, m := range in.snapshot() {
				i, _ := strconv.Atoi(m.payload)
				seen[i]++
				per[k]++
			}
		}
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("message %d delivered %d times (per member %v)", i, c, per)
			}
		}
		if per[0]+per[1] == 0 || per[2] == 0 || per[3] == 0 {
			t.Fatalf("not spread over the nodes: per member %v", per)
		}
		t.Logf("10,000 shared messages, once each; per member (n1, n1, n2, n3): %v", per)
	})

	t.Run("NoLocalOverlapOrder", func(t *testing.T) {
		waitRoutes(t, nodes, 0)
		// No Local is per client [MQTT-3.8.3-3]: the publisher on n1 does
		// not get its own message, a client on n2 with the same filter does.
		me, myIn := connect(t, nodes[0].addr, "nl-me", codec.Version5)
		subscribe(t, me, nil, codec.Subscription{Filter: []byte("nl/#"), QoS: 1, NoLocal: true})
		other, otherIn := connect(t, nodes[1].addr, "nl-other", codec.Version5)
		var p1, p2 codec.Properties
		p1.SubscriptionIDs, p2.SubscriptionIDs = []uint32{1}, []uint32{2}
		// Overlapping filters on n2: one delivery with both identifiers [MQTT-3.3.4-2] [MQTT-3.3.4-3].
		subscribe(t, other, &p1, codec.Subscription{Filter: []byte("nl/#"), QoS: 1})
		subscribe(t, other, &p2, codec.Subscription{Filter: []byte("nl/+"), QoS: 0})
		// n3 takes the ordered stream.
		ord, ordIn := connect(t, nodes[2].addr, "ord", codec.Version5)
		subscribe(t, ord, nil, codec.Subscription{Filter: []byte("nl/order"), QoS: 1})
		addRoutes(t, 3, 2, 3) // n1: nl/# nl/+ of n2, nl/order of n3; n2: nl/# of n1, nl/order; n3: nl/# of n1, nl/# nl/+ of n2
		publish(t, me, &client.Message{Topic: []byte("nl/a"), Payload: []byte("x"), QoS: 1})
		msgs := otherIn.wait(t, 1, 20*time.Second)
		if len(msgs) != 1 || msgs[0].qos != 1 || !slices.Equal(sortIDs(msgs[0].props.SubscriptionIDs), []uint32{1, 2}) {
			t.Fatalf("n2 got %+v", msgs)
		}
		// Order per publisher and topic, QoS 0 and 1 mixed [MQTT-4.6.0-5].
		const n = 2000
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for i := range n {
			if err := me.PublishAsync(ctx, &client.Message{Topic: []byte("nl/order"), Payload: []byte(strconv.Itoa(i)), QoS: byte(i % 2)}, nil); err != nil {
				t.Fatal(err)
			}
		}
		got := ordIn.wait(t, n, 60*time.Second)
		for i, m := range got {
			if m.payload != strconv.Itoa(i) {
				t.Fatalf("n3 message %d is %q", i, m.payload)
			}
		}
		if mine := myIn.snapshot(); len(mine) != 0 {
			t.Fatalf("No Local: the publisher got %d of its own messages", len(mine))
		}
	})
}

func sortIDs(ids []uint32) []uint32 {
	out := slices.Clone(ids)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Retained messages set, replaced and cleared on any node converge on every
// node [MQTT-3.3.1-5] [MQTT-3.3.1-6]; a new subscriber anywhere gets the
// current one.
func testRetained(t *testing.T, nodes []*testNode) {
	var pubs []*client.Client
	for i, tn := range nodes {
		c, _ := connect(t, tn.addr, fmt.Sprintf("rpub%d", i), codec.Version5)
		pubs = append(pubs, c)
	}
	check := func(want map[string]string) {
		t.Helper()
		for i, tn := range nodes {
			deadline := time.Now().Add(20 * time.Second)
			for {
				c, in := connect(t, tn.addr, fmt.Sprintf("rsub%d", i), codec.Version5)
				subscribe(t, c, nil, codec.Subscription{Filter: []byte("ret/#"), QoS: 1})
				time.Sleep(50 * time.Millisecond)
				have := map[string]string{}
				for _, m := range in.snapshot() {
					if m.retain {
						have[m.topic] = m.payload
					}
				}
				_ = c.Close()
				if fmt.Sprint(have) == fmt.Sprint(want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("node %s has retained %v, want %v", tn.name, have, want)
				}
			}
		}
	}
	for i, c := range pubs {
		publish(t, c, &client.Message{Topic: []byte(fmt.Sprintf("ret/%d", i)), Payload: []byte("v1"), QoS: 1, Retain: true})
	}
	check(map[string]string{"ret/0": "v1", "ret/1": "v1", "ret/2": "v1"})
	publish(t, pubs[2], &client.Message{Topic: []byte("ret/0"), Payload: []byte("v2"), QoS: 0, Retain: true})
	publish(t, pubs[0], &client.Message{Topic: []byte("ret/1"), Payload: nil, QoS: 1, Retain: true})
	check(map[string]string{"ret/0": "v2", "ret/2": "v1"})
	for i, c := range pubs {
		publish(t, c, &client.Message{Topic: []byte(fmt.Sprintf("ret/%d", i)), QoS: 1, Retain: true})
	}
	check(map[string]string{})
}

// testPropagation checks that a SUBACK comes only once the other nodes
// route the filter (a message published on another node right after the
// SUBACK arrives: the SUBSCRIBE is parked until the peers have the route),
// and measures what that costs: the SUBSCRIBE's round trip for a new
// filter, against one for a filter the node already holds.
func testPropagation(t *testing.T, nodes []*testNode) {
	pub, _ := connect(t, nodes[0].addr, "prop-pub", codec.Version5)
	var fresh, held []time.Duration
	for i := range 40 {
		at := nodes[1+i%2]
		c, in := connect(t, at.addr, fmt.Sprintf("prop%d", i), codec.Version5)
		filter := fmt.Sprintf("prop/%d", i)
		start := time.Now()
		subscribe(t, c, nil, codec.Subscription{Filter: []byte(filter), QoS: 1})
		fresh = append(fresh, time.Since(start))
		if !nodes[0].node.hasRoute(at.name, filter) {
			t.Fatalf("SUBACK for %s on %s before %s has the route", filter, at.name, nodes[0].name)
		}
		publish(t, pub, &client.Message{Topic: []byte(filter), Payload: []byte("right after the SUBACK"), QoS: 1})
		msgs := in.wait(t, 1, 10*time.Second)
		if msgs[0].payload != "right after the SUBACK" {
			t.Fatalf("got %q", msgs[0].payload)
		}
		start = time.Now()
		subscribe(t, c, nil, codec.Subscription{Filter: []byte(filter), QoS: 0}) // held: no wait
		held = append(held, time.Since(start))
		_ = c.Close()
	}
	slices.Sort(fresh)
	slices.Sort(held)
	t.Logf("SUBSCRIBE round trip, new filter (SUBACK once the peers route it): p50 %v, p99 %v; filter already held: p50 %v, p99 %v (n=%d)",
		fresh[len(fresh)/2].Round(10*time.Microsecond), fresh[len(fresh)*99/100].Round(10*time.Microsecond),
		held[len(held)/2].Round(10*time.Microsecond), held[len(held)*99/100].Round(10*time.Microsecond), len(fresh))
}
