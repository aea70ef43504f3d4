package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestClusterSessionEntries: the registry keeps no entry of a clean session
// whose connection ended (the bucket does not grow with clean clients
// coming and going), and never removes the entry of a newer owner: a client
// that moves to another node, or connects again on the same one, keeps its
// entry; so does a persistent session that went offline.
func TestClusterSessionEntries(t *testing.T) {
	nodes := startCluster(t, 3)
	n1 := nodes[0].node
	entries := func() uint64 { return registryEntries(t, n1) }
	owner := func(id string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e, err := n1.sess.kv.Get(ctx, sessionKey(id))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ""
		}
		if err != nil {
			t.Fatalf("registry entry of %s: %v", id, err)
		}
		var se sessionEntry
		_ = json.Unmarshal(e.Value(), &se)
		return se.Node
	}
	waitEntries := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			got := entries()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("registry holds %d entries, want %d", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Clean clients come and go on every node, three rounds of 60: the
	// registry goes back to empty each time.
	for round := range 3 {
		for i := range 60 {
			c, _ := connect(t, nodes[i%3].addr, fmt.Sprintf("clean-%d-%d", round, i), codec.Version5)
			if i%2 == 0 {
				_ = c.Disconnect(codec.Success, nil)
			} else {
				_ = c.Close() // the connection drops without DISCONNECT
			}
		}
		waitEntries(0)
	}

	// A persistent session offline keeps its entry.
	p, _ := connectSession(t, nodes[1].addr, "persistent", true, 3600)
	_ = p.Disconnect(codec.Success, nil)

	// Moves: a clean client connected on n1 connects clean on n2 (taken
	// over), then again on n2 (taken over locally), then its first
	// connection's node sees nothing more of it; another leaves n1 and
	// comes back on n3 at once.
	a1, _ := connect(t, nodes[0].addr, "mover", codec.Version5)
	connect(t, nodes[1].addr, "mover", codec.Version5)
	waitClosed(t, a1, 10*time.Second)
	connect(t, nodes[1].addr, "mover", codec.Version5)
	b1, _ := connect(t, nodes[0].addr, "hopper", codec.Version5)
	_ = b1.Close()
	connect(t, nodes[2].addr, "hopper", codec.Version5)
	time.Sleep(time.Second) // any purge of the old entries is done by now
	waitEntries(3)
	for id, want := range map[string]string{"mover": "n2", "hopper": "n3", "persistent": "n2"} {
		if got := owner(id); got != want {
			t.Errorf("registry: %s owned by %q, want %q", id, got, want)
		}
	}
}

// TestClusterSessionEntriesDeadNode: the entries of a node that dies do
// not stay in the registry for good: the survivor that takes its sessions
// over removes those of its clean sessions (ended with it); a persistent
// session's entry, and a clean client's with a will (the will sent), stay,
// naming the survivor that took them (a node only cut off ends them at the
// heal); and a clean client of the dead node that has connected again
// elsewhere meanwhile keeps its new entry.
func TestClusterSessionEntriesDeadNode(t *testing.T) {
	nodes := startCluster(t, 3)
	n1 := nodes[0].node
	entries := func() uint64 { return registryEntries(t, n1) }
	const clean = 30
	dying := nodes[2]
	for i := range clean {
		connect(t, dying.addr, fmt.Sprintf("dies-clean-%d", i), codec.Version5)
	}
	o := client.Options{Addr: dying.addr, ClientID: "dies-will", Version: codec.Version5, CleanStart: true,
		Will: &client.Message{Topic: []byte("wills/dies-will"), Payload: []byte("gone"), QoS: 1}}
	connectWith(t, o)
	p, _ := connectSession(t, dying.addr, "dies-persistent", true, 3600)
	_ = p.Disconnect(codec.Success, nil)
	waitFor(t, 15*time.Second, "every entry written", func() bool { return entries() == clean+2 })
	// The persistent session's offline state is replicated (asynchronously).
	waitFor(t, 15*time.Second, "the persistent session's state replicated", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		subject := n1.stateSubject(dying.name, "dies-persistent")
		all, err := n1.readState(ctx, subject)
		if err != nil || all[subject] == nil || all[subject].state == nil {
			return false
		}
		rec, err := sessionRecord("dies-persistent", all[subject].state)
		return err == nil && rec.DisconnectedAt != 0
	})

	killed := time.Now()
	dying.kill(t)
	// One of its clean clients connects again on n2 as the survivors find
	// the node dead (and sweep it).
	waitFor(t, 60*time.Second, "n2 sees the node dead", func() bool { return nodes[1].node.Stats.PeersUp.Load() == 1 })
	connect(t, nodes[1].addr, "dies-clean-0", codec.Version5)
	waitFor(t, 60*time.Second, "the dead node's clean entries removed", func() bool { return entries() == 3 })
	t.Logf("registry back to 3 entries %v after the kill", time.Since(killed).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for id, want := range map[string]string{"dies-clean-0": "n2", "dies-persistent": "", "dies-will": ""} {
		e, err := n1.sess.kv.Get(ctx, sessionKey(id))
		if err != nil {
			t.Fatalf("registry entry of %s: %v", id, err)
		}
		var se sessionEntry
		_ = json.Unmarshal(e.Value(), &se)
		if se.Node == dying.name || (want != "" && se.Node != want) {
			t.Errorf("registry: %s owned by %q, want %q (not the dead %s)", id, se.Node, want, dying.name)
		}
	}
}

// registryEntries counts the entries of n's session registry.
func registryEntries(t *testing.T, n *Node) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := n.sess.stream.Info(ctx)
	if err != nil {
		t.Fatalf("registry stream: %v", err)
	}
	return info.State.Msgs
}
