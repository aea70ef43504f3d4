package cluster

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/trie"
)

// A SUBACK comes only once the other nodes route the new filters to this
// node, so that a message published anywhere after the SUBACK is delivered.
// The SUBSCRIBE is parked (session.ErrParked) while this node announces a
// filter it did not hold: the writer puts the route key into the bucket,
// then asks every live peer (core NATS request on "midge.<cluster>.sync.<node>")
// to answer once its watch of the bucket has applied that revision, which
// puts the route into its trie. Then the interest is settled and the parked
// SUBSCRIBEs are woken and handled again. A filter already held and settled
// costs one map lookup; a peer that does not answer within syncWait, or a
// bucket that cannot be written within settleWait, delays a SUBACK no more
// (logged).
const (
	syncWait = 2 * time.Second
	// settleWait: JetStream can take seconds to take a write just after the
	// cluster formed on a loaded machine; a SUBACK sent before the route
	// is in place lost whole seconds of messages in `make perf`.
	settleWait = 10 * time.Second
	// staleAfter: an interest announced for a SUBSCRIBE whose client left
	// before it was handled again has no subscriber; it is withdrawn then.
	staleAfter = 30 * time.Second
)

// syncAsk is a peer's question: reply once applied reaches rev.
type syncAsk struct {
	rev   uint64
	reply string
	at    time.Time
}

// Subscribing implements session.Cluster.
func (n *Node) Subscribing(t *session.Ticket, filters []string) bool {
	n.imu.Lock()
	defer n.imu.Unlock()
	var wait *interest
	for _, f := range filters {
		if isSys(f) || trie.ValidFilter(f) != nil {
			continue
		}
		in := n.interest[f]
		if in == nil {
			in = n.announceLocked(f)
		}
		if !in.settled && wait == nil {
			wait = in
		}
	}
	if wait == nil || !t.Begin("cluster route") {
		return true
	}
	wait.waiters = append(wait.waiters, t)
	if wait.timer == nil {
		wait.timer = time.AfterFunc(settleWait, func() {
			n.log.Printf("cluster %s: a route of node %s not written or not confirmed by the peers within %v: SUBACK sent anyway",
				n.cfg.Name, n.cfg.NodeName, settleWait)
			n.settle([]*interest{wait})
		})
	}
	return false
}

// settle marks interests as known to the peers and wakes their parked
// SUBSCRIBEs.
func (n *Node) settle(ins []*interest) {
	var wake []*session.Ticket
	n.imu.Lock()
	for _, in := range ins {
		if in.settled {
			continue
		}
		in.settled = true
		wake = append(wake, in.waiters...)
		in.waiters = nil
		if in.timer != nil {
			in.timer.Stop()
		}
	}
	n.imu.Unlock()
	for _, t := range wake {
		t.Answer(0)
	}
}

// syncPeers returns once every live peer has applied the routes bucket up
// to rev (or has not answered within syncWait).
func (n *Node) syncPeers(rev uint64) {
	if rev == 0 {
		return
	}
	n.rmu.Lock()
	var names []string
	for _, p := range n.peers {
		if p.alive {
			names = append(names, p.name)
		}
	}
	n.rmu.Unlock()
	msg := binary.BigEndian.AppendUint64(nil, rev)
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := n.nc.Request(n.prefix+"sync."+name, msg, syncWait); err != nil {
				// Its watch of the routes is behind or stuck: what is
				// published there may miss this node's new subscribers.
				n.log.Printf("cluster %s: node %s did not confirm routes up to revision %d: %v", n.cfg.Name, name, rev, err)
			}
		}()
	}
	wg.Wait()
}

// syncAsked takes a peer's question. Runs on the subscription's goroutine.
func (n *Node) syncAsked(msg *nats.Msg) {
	if len(msg.Data) != 8 || msg.Reply == "" {
		return
	}
	rev := binary.BigEndian.Uint64(msg.Data)
	n.rmu.Lock()
	if n.applied >= rev {
		n.rmu.Unlock()
		_ = n.nc.Publish(msg.Reply, nil)
		return
	}
	n.syncs = append(n.syncs, syncAsk{rev: rev, reply: msg.Reply, at: time.Now()})
	n.rmu.Unlock()
}

// dueSyncsLocked takes the questions that applied now answers, and those
// the asker has given up on. Assumes rmu.
func (n *Node) dueSyncsLocked() []string {
	if len(n.syncs) == 0 {
		return nil
	}
	var due []string
	keep := n.syncs[:0]
	for _, s := range n.syncs {
		switch {
		case s.rev <= n.applied:
			due = append(due, s.reply)
		case time.Since(s.at) < syncWait:
			keep = append(keep, s)
		}
	}
	clear(n.syncs[len(keep):])
	n.syncs = keep
	return due
}

func (n *Node) answerSyncs(replies []string) {
	for _, r := range replies {
		_ = n.nc.Publish(r, nil)
	}
}

// sweepStale withdraws interests announced for SUBSCRIBEs that were never
// handled again (their clients left while parked).
// Every staleAfter/3: it scans all of this node's filters.
func (n *Node) sweepStale(now time.Time) {
	if now.Sub(n.swept) < staleAfter/3 {
		return
	}
	n.swept = now
	n.imu.Lock()
	defer n.imu.Unlock()
	for f, in := range n.interest {
		if in.n == 0 && in.settled && now.Sub(in.made) > staleAfter {
			delete(n.interest, f)
			delete(n.tokens, in.token)
			n.queue(kvOp{key: routeKey(n.cfg.NodeName, f)})
		}
	}
}
