package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestClusterWatchRecovers breaks the nodes' watches of the routes bucket
// the two ways they broke — the watch falls silent (here: the stream's
// leader steps down and the watches' consumers are paused, heartbeats
// going on), or nats.go ends the watcher (as when it gives up re-making its
// consumer after a leader change) — and checks that a route made
// afterwards still takes effect on every node within a few seconds. Before
// the watches were made again, a node kept its stale view for good.
func TestClusterWatchRecovers(t *testing.T) {
	nodes := startCluster(t, 3)
	stream := "KV_midge-test-routes"
	pub, _ := connect(t, nodes[0].addr, "wr-pub", codec.Version5)

	silence := func(t *testing.T) {
		for _, tn := range nodes {
			if tn.node.ns.JetStreamIsStreamLeader("$G", stream) {
				if err := tn.node.ns.JetStreamStepdownStream("$G", stream); err != nil {
					t.Logf("stepdown: %v", err)
				}
				break
			}
		}
		// The watches' consumers stop delivering without a word (paused:
		// their heartbeats go on, so nats.go sees nothing wrong).
		done := 0
		deadline := time.Now().Add(10 * time.Second)
		for done == 0 && time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := nodes[2].node.js.Stream(ctx, stream)
			if err == nil {
				names := st.ConsumerNames(ctx)
				for name := range names.Name() {
					if _, err := st.PauseConsumer(ctx, name, time.Now().Add(time.Minute)); err == nil {
						done++
					}
				}
			}
			cancel()
		}
		if done == 0 {
			t.Fatal("no consumer of the routes stream paused")
		}
	}
	end := func(t *testing.T) {
		for _, tn := range nodes {
			w, ok := tn.node.watching.Load("midge-test-routes")
			if !ok {
				t.Fatalf("%s: no watch of the routes", tn.name)
			}
			_ = w.(jetstream.KeyWatcher).Stop()
		}
	}
	for round, breakIt := range []func(*testing.T){silence, end, silence, end} {
		breakIt(t)
		filter := fmt.Sprintf("wr/%d", round)
		sub, in := connect(t, nodes[1].addr, fmt.Sprintf("wr-sub%d", round), codec.Version5)
		subscribe(t, sub, nil, codec.Subscription{Filter: []byte(filter), QoS: 1})
		// Within 8 s: quicker than nats.go's own recovery of a silent
		// consumer, slower than a watch's check (2 s) twice and its remaking.
		deadline := time.Now().Add(8 * time.Second)
		for len(in.snapshot()) == 0 || !nodes[2].node.hasRoute("n2", filter) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: a route made after the watches broke: message arrived %v, on n3 %v; n1's routes %v",
					round, len(in.snapshot()) > 0, nodes[2].node.hasRoute("n2", filter), nodes[0].node.routeList())
			}
			publish(t, pub, &client.Message{Topic: []byte(filter), Payload: []byte("x"), QoS: 0})
			time.Sleep(100 * time.Millisecond)
		}
		_ = sub.Close()
	}
	restarts := int64(0)
	for _, tn := range nodes {
		restarts += tn.node.Stats.WatchRestarts.Load()
	}
	t.Logf("watches made again: %d", restarts)
}
