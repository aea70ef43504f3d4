package cluster

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// restartAll starts stopped nodes again on their stores, all at once (a
// JetStream cluster needs a quorum to form).
func restartAll(t testing.TB, nodes []*testNode) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, tn := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = tn.start(tn.peers) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("restart %s: %v\n%s", nodes[i].name, err, nodes[i].logs)
		}
	}
}

// TestClusterFullRestart stops the three nodes (as SIGTERM does, one after
// the other) and starts them again on their stores: retained messages and
// a persistent session with the QoS 1 messages queued for it while it was
// offline are kept; the will of a client connected at the stop is sent at
// the stop, once, and not again at the restart.
func TestClusterFullRestart(t *testing.T) {
	nodes := startCluster(t, 3)
	const queued = 50

	setter, _ := connect(t, nodes[0].addr, "setter", codec.Version311)
	publish(t, setter, &client.Message{Topic: []byte("keep/ret"), Payload: []byte("kept"), QoS: 1, Retain: true})

	sleeper, _ := connectSession(t, nodes[1].addr, "sleeper", true, 600)
	subscribe(t, sleeper, nil, codec.Subscription{Filter: []byte("keep/q/#"), QoS: 1})
	waitRoute(t, nodes[2], "n2", "keep/q/#")
	_ = sleeper.Disconnect(0, nil)

	watcher, wills := connectSession(t, nodes[2].addr, "watcher", true, 600)
	subscribe(t, watcher, nil, codec.Subscription{Filter: []byte("wills/#"), QoS: 1})
	waitRoute(t, nodes[0], "n3", "wills/#")
	connectWith(t, client.Options{Addr: nodes[0].addr, ClientID: "dier", Version: codec.Version5, CleanStart: true,
		Will: &client.Message{Topic: []byte("wills/dier"), Payload: []byte("gone"), QoS: 1}})

	pub, _ := connect(t, nodes[2].addr, "queuer", codec.Version5)
	for i := range queued {
		publish(t, pub, &client.Message{Topic: []byte("keep/q/x"), Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	waitQueued(t, nodes[1], "sleeper", queued)
	time.Sleep(500 * time.Millisecond) // the replicated queue is written asynchronously

	stopped := time.Now()
	for _, tn := range nodes {
		tn.stop(t)
	}
	t.Logf("the three nodes stopped in %v", time.Since(stopped).Round(time.Millisecond))
	// The will's client was closed by its node's stop: the will went out
	// then [MQTT-3.1.2-8], to the nodes still up.
	if got := wills.wait(t, 1, 10*time.Second); got[0].payload != "gone" {
		t.Fatalf("will: %+v", got[0])
	}

	started := time.Now()
	restartAll(t, nodes)
	t.Logf("the three nodes started again in %v", time.Since(started).Round(time.Millisecond))

	// Retained: on every node.
	for _, tn := range nodes {
		c, in := connect(t, tn.addr, "reader-"+tn.name, codec.Version5)
		subscribe(t, c, nil, codec.Subscription{Filter: []byte("keep/ret"), QoS: 1})
		if got := in.wait(t, 1, 10*time.Second); got[0].payload != "kept" || !got[0].retain {
			t.Fatalf("retained on %s after the restart: %+v", tn.name, got[0])
		}
	}
	// The persistent session, resumed on another node than its own, with
	// every message queued while it was offline, in order [MQTT-4.6.0-2].
	s2, in2 := connectSession(t, nodes[0].addr, "sleeper", false, 600)
	if !s2.Connack().SessionPresent {
		t.Fatal("sleeper after the restart: session present 0, want 1")
	}
	got := in2.wait(t, queued, 20*time.Second)
	for i, m := range got[:queued] {
		if m.payload != strconv.Itoa(i) {
			t.Fatalf("queued message %d: %q", i, m.payload)
		}
	}
	// The watcher's session is back too, and the will does not come again.
	w2, wills2 := connectSession(t, nodes[2].addr, "watcher", false, 600)
	if !w2.Connack().SessionPresent {
		t.Fatal("watcher after the restart: session present 0, want 1")
	}
	time.Sleep(time.Second)
	if n := len(wills.snapshot()) + len(wills2.snapshot()); n != 1 {
		t.Fatalf("the will arrived %d times", n)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(in2.snapshot()); n != queued {
		t.Fatalf("sleeper got %d messages, want %d", n, queued)
	}
}
