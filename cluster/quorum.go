package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Partitions. A node that hears fewer than half of the cluster's other
// nodes is in a minority: it cannot tell a partition from the others'
// death, and JetStream has no quorum on its side. It says so (log,
// $SYS/broker/cluster/minority), goes on serving the clients connected to
// it, refuses new CONNECTs (the registry does not answer: sessions.go), and
// judges nobody dead for their sessions: purging routes and adopting
// sessions is left to the majority. When it hears a majority again:
//   - the sessions it holds that the registry now gives to another node
//     (the majority adopted them, or their client connected there) end
//     here, their clients disconnected (v5 0x8E) without a will: one
//     session per client id again, the majority's (reconcile);
//   - its routes, which the majority deleted meanwhile, are written again
//     (routes.go: reannounceAll; reannounce when its watch sees a delete);
//   - nodes still silent after DeadAfter are judged dead now (their
//     sessions adopted), as they would have been had it kept a quorum.

// quorumLocked updates the minority state after a peer went up or down.
// Assumes rmu.
func (n *Node) quorumLocked() {
	if !n.joined.Load() || n.size <= 1 {
		return
	}
	reach := 1 + int(n.Stats.PeersUp.Load())
	minority := 2*reach <= n.size
	if minority == n.minority.Load() {
		n.hadMajority = n.hadMajority || !minority
		return
	}
	if minority && !n.hadMajority && time.Since(time.Unix(0, n.joinNano.Load())) < n.cfg.DeadAfter {
		return // just joined: the peers' heartbeats may be on their way (liveness asks again)
	}
	n.minority.Store(minority)
	n.hadMajority = n.hadMajority || !minority
	if minority {
		n.state.unsure.Store(true) // until reconcile: sessionstate.go
		n.Stats.Minority.Store(1)
		n.cutAt = time.Now()
		n.log.Printf("cluster %s: node %s is cut off from the majority (%d of %d nodes reachable): serving the clients connected here, refusing new CONNECTs",
			n.cfg.Name, n.cfg.NodeName, reach, n.size)
		return
	}
	n.Stats.Minority.Store(0)
	n.log.Printf("cluster %s: node %s is in the majority again (%d of %d nodes reachable) after %v cut off",
		n.cfg.Name, n.cfg.NodeName, reach, n.size, time.Since(n.cutAt).Round(time.Millisecond))
	if n.closing.Load() {
		return
	}
	n.wg.Add(1)
	go n.rejoined()
}

// rejoined: see the top of this file.
func (n *Node) rejoined() {
	defer n.wg.Done()
	n.reannounceAll() // the writer retries until JetStream takes them
	n.reconcile()
	select {
	case <-n.stop:
		return
	case <-time.After(n.cfg.DeadAfter):
	}
	n.rmu.Lock()
	defer n.rmu.Unlock()
	if n.minority.Load() || !n.lowestAliveLocked() {
		return
	}
	for _, p := range n.peers {
		if !p.alive {
			n.purgeLocked(p)
			n.adoptDead(p.name)
		}
	}
}

// stopContext is a context that ends after d or when the node stops,
// whichever comes first: for work off the node's goroutines that a stop
// must not wait out.
func (n *Node) stopContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// reconcile ends the sessions held here that the registry gives to another
// node.
func (n *Node) reconcile() {
	ctx, cancel := n.stopContext(30 * time.Second)
	defer cancel()
	start := time.Now()
	ended, checked := 0, 0
	for _, id := range n.b.SessionIDs() {
		if n.claiming(id) {
			continue // a CONNECT here is making it this node's
		}
		for ctx.Err() == nil {
			if n.minority.Load() {
				return // cut off again: the next rejoin checks
			}
			mine, err := n.confirmOwner(ctx, id)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			checked++
			if !mine && !n.claiming(id) && n.b.Drop(id) {
				ended++
				n.sess.reconciled.Add(1)
			}
			break
		}
	}
	n.log.Printf("cluster %s: checked %d sessions against the registry after a partition in %v: %d now another node's, ended here",
		n.cfg.Name, checked, time.Since(start).Round(time.Millisecond), ended)
	if ctx.Err() == nil && !n.minority.Load() {
		n.state.unsure.Store(false)
	}
}

// confirmOwner reports whether id's registry entry names another node; an
// entry naming this one is confirmed by writing it again at its revision,
// and a missing one is written anew (the majority took this node for dead
// and removed the entries of its clean sessions: sessionstate.go).
// A read may be answered by this node's own replica, still behind what the
// majority wrote; the compare-and-set is decided by the stream's leader
// with a quorum, so it fails on such a stale revision and the entry is read
// again.
func (n *Node) confirmOwner(ctx context.Context, id string) (mine bool, err error) {
	return n.confirmKey(ctx, sessionKey(id), id)
}

// confirmKey is confirmOwner for a registry key. Without the client id
// (the state writer knows only the key: sessionstate.go), a missing entry
// is left missing and counts as this node's, as nobody else claimed it.
func (n *Node) confirmKey(ctx context.Context, key, id string) (mine bool, err error) {
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	e, err := n.sess.kv.Get(gctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) && id == "" {
		return true, nil
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		val, _ := json.Marshal(sessionEntry{Node: n.cfg.NodeName, ID: id})
		rev, err := n.sess.kv.Create(gctx, key, val)
		if err != nil {
			return false, err // read again: another node may have claimed it meanwhile
		}
		r := &n.sess.revs
		r.mu.Lock()
		r.open[id] = rev // purged when the session ends here
		r.mu.Unlock()
		return true, nil
	}
	if err != nil {
		return false, err
	}
	var cur sessionEntry
	if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &cur) != nil || cur.Node == "" {
		return true, nil
	}
	if cur.Node != n.cfg.NodeName {
		return false, nil
	}
	if _, err := n.sess.kv.Update(gctx, key, e.Value(), e.Revision()); err != nil {
		return false, err
	}
	return true, nil
}
