package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestClusterMinorityRefuses: a node left alone (the two others dead: no
// JetStream quorum) refuses a new CONNECT within seconds, with v5 0x88
// (server unavailable) or v3 3, rather than hanging; a client connected
// before goes on being served there. The session state it cannot
// replicate meanwhile shows as pending ($SYS/broker/cluster/sessions/
// state-pending), which is 0 while JetStream takes the writes.
func TestClusterMinorityRefuses(t *testing.T) {
	nodes := startCluster(t, 3)
	old, in := connect(t, nodes[0].addr, "before", codec.Version5)
	subscribe(t, old, nil, codec.Subscription{Filter: []byte("local/#"), QoS: 1})
	kept, _ := connectSession(t, nodes[0].addr, "kept", true, 600)
	subscribe(t, kept, nil, codec.Subscription{Filter: []byte("kept/a"), QoS: 1})
	waitFor(t, 10*time.Second, "the persistent session's snapshot written", func() bool { return statePending(nodes[0]) == 0 })
	nodes[1].kill(t)
	nodes[2].kill(t)
	// A change JetStream cannot take now (no quorum) stays pending.
	subscribe(t, kept, nil, codec.Subscription{Filter: []byte("kept/b"), QoS: 1})
	for range 20 {
		if p := statePending(nodes[0]); p < 1 {
			t.Fatalf("state-pending %d after a snapshot that cannot be written", p)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, v := range []byte{codec.Version5, codec.Version311} {
		c := client.New(client.Options{Addr: nodes[0].addr, ClientID: "late", Version: v, CleanStart: true})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		err := c.Connect(ctx)
		took := time.Since(start)
		cancel()
		want := byte(codec.ServerUnavailable)
		if v != codec.Version5 {
			want = codec.ConnRefusedServerUnavailable
		}
		var ce *client.ConnackError
		if !errors.As(err, &ce) || ce.Code != want {
			t.Fatalf("v%d CONNECT in a minority: %v, want CONNACK %#x", v, err, want)
		}
		if took > 10*time.Second {
			t.Fatalf("v%d CONNECT refused after %v", v, took)
		}
		t.Logf("v%d CONNECT refused after %v", v, took.Round(time.Millisecond))
	}
	publish(t, old, &client.Message{Topic: []byte("local/x"), Payload: []byte("still here"), QoS: 1})
	if got := in.wait(t, 1, 10*time.Second); got[0].payload != "still here" {
		t.Fatalf("got %q", got[0].payload)
	}
}

// statePending reads $SYS/broker/cluster/sessions/state-pending of tn.
func statePending(tn *testNode) int64 {
	for _, s := range tn.b.ExtraStats() {
		if s.Name == "cluster/sessions/state-pending" {
			return s.Value
		}
	}
	return -1
}
