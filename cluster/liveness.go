package cluster

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Liveness rides core NATS, not JetStream: every node publishes a heartbeat
// on "midge.<cluster>.hb.<node>" each Heartbeat; a node not heard for
// DeadAfter is down, and its routes leave every local trie (nothing is
// forwarded to it any more). A node that stops says "bye" so the others drop
// it at once. The live node with the lowest name then deletes the dead
// node's route keys (each only if not rewritten since).

// heartbeatUp is a live node's heartbeat. "K": it answers requests for
// confirmations (confirm.go); an older node says "up" and is not asked.
var heartbeatUp = []byte("up K")

// heard takes a heartbeat or a goodbye. Runs on the subscription's goroutine.
func (n *Node) heard(msg *nats.Msg) {
	name := strings.TrimPrefix(msg.Subject, n.prefix+"hb.")
	if name == n.cfg.NodeName || name == "" {
		return
	}
	n.rmu.Lock()
	defer n.rmu.Unlock()
	p := n.peerLocked(name)
	if string(msg.Data) == "bye" {
		p.seen = time.Time{}
		wasAlive := p.alive
		n.setAliveLocked(p, false, "it left")
		if wasAlive && n.lowestAliveLocked() && !n.minority.Load() {
			n.adoptDead(p.name) // sessionstate.go: its sessions live on here
		}
		return
	}
	p.seen = time.Now()
	p.confirms.Store(bytes.Equal(msg.Data, heartbeatUp))
	n.setAliveLocked(p, true, "")
}

// awaitPeers waits, before the listeners open, until every node that has
// routes in the bucket has been heard from, or for DeadAfter at most: a
// client must not miss a live node's subscribers.
func (n *Node) awaitPeers(ctx context.Context) {
	deadline := time.Now().Add(n.cfg.DeadAfter)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n.rmu.Lock()
		missing := 0
		for _, p := range n.peers {
			if !p.alive && len(p.routes) > 0 {
				missing++
			}
		}
		n.rmu.Unlock()
		if missing == 0 {
			return
		}
		time.Sleep(n.cfg.Heartbeat / 4)
	}
}

// liveness sends heartbeats and judges the peers' silence.
func (n *Node) liveness() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	hb := n.prefix + "hb." + n.cfg.NodeName
	var rewritten int64
	for {
		_ = n.nc.Publish(hb, heartbeatUp)
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		n.sweepStale(now)
		n.sweepConfirms(now) // confirm.go
		if k, size := n.recv.sweep(now); k > 0 {
			n.log.Printf("cluster %s: freed %d unfinished forwarded batches (%d bytes) whose sender fell silent", n.cfg.Name, k, size)
		}
		if r := n.Stats.RoutesRewritten.Load(); r != rewritten {
			n.log.Printf("cluster %s: wrote %d own routes again that other nodes had deleted (they took this node for dead)", n.cfg.Name, r-rewritten)
			rewritten = r
		}
		n.rmu.Lock()
		n.noteQuietLocked(now)
		var gone []*peer
		for _, p := range n.peers {
			if p.alive && now.Sub(p.seen) > n.cfg.DeadAfter {
				n.setAliveLocked(p, false, "no heartbeat for "+now.Sub(p.seen).Round(time.Millisecond).String())
				gone = append(gone, p)
			}
		}
		// Judged once all the silent ones are down: a node cut off judges
		// nobody (quorum.go).
		n.quorumLocked()
		if len(gone) > 0 && n.lowestAliveLocked() && !n.minority.Load() {
			for _, p := range gone {
				n.purgeLocked(p)
				n.adoptDead(p.name) // sessionstate.go
			}
		}
		n.rmu.Unlock()
	}
}

// lowestAliveLocked reports whether this node has the lowest name among the
// live ones. Assumes rmu.
func (n *Node) lowestAliveLocked() bool {
	for _, p := range n.peers {
		if p.alive && p.name < n.cfg.NodeName {
			return false
		}
	}
	return true
}

// purgeLocked deletes a dead node's route keys, each only if it was not
// written since (the node may be back). Assumes rmu; the deletes run off it.
func (n *Node) purgeLocked(p *peer) {
	revs := make(map[string]uint64, len(p.revs))
	for k, r := range p.revs {
		revs[k] = r
	}
	if len(revs) == 0 {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := 0
		for k, r := range revs {
			if n.peerAlive(p.name) || n.minority.Load() {
				break // it is back, or this node is cut off itself
			}
			if n.routes.Delete(ctx, k, jetstream.LastRevision(r)) == nil {
				done++
			}
		}
		n.log.Printf("cluster %s: deleted %d route keys of node %s", n.cfg.Name, done, p.name)
	}()
}

// noteQuietLocked notes the time when this node hears no majority within
// a third of DeadAfter: long before the others may take it for dead (after
// DeadAfter of the same silence, when a cut is what silences both sides),
// its state writer knows that what it writes now may be stored after they
// took its sessions (sessionstate.go: checkOwners). Assumes rmu.
func (n *Node) noteQuietLocked(now time.Time) {
	if !n.joined.Load() || n.size <= 1 {
		return
	}
	reach := 1
	for _, p := range n.peers {
		if now.Sub(p.seen) <= n.cfg.DeadAfter/3 {
			reach++
		}
	}
	if 2*reach <= n.size {
		n.state.quietAt.Store(now.UnixNano())
	}
}
