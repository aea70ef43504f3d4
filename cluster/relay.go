package cluster

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/trie"
)

// Relay after a takeover across nodes. When node A hands a session over to
// node B, the other nodes still route its filters to A until their watch of
// the routes bucket has B's route; what they forwarded to A meanwhile
// arrives after the session left A. So, for a session handed over with its
// state:
//
//   - A keeps its routes for the session's filters ("pins" their interest)
//     until its own watch has applied B's route for each (or B held it
//     already). The bucket is one ordered stream: every node then applies
//     B's put before A's delete, and no node is ever left with neither
//     route for a moment.
//   - Whatever A receives for those filters from the handover on is
//     passed on to B as a forward, kept by A until B says it has installed
//     the session ("done", op 2 on A's take subject, after Install), sent
//     at once afterwards, until relayGrace after the last pin went (a
//     forward in flight from a node that was behind).
//
// A message that A delivered into the session just before the handover
// may be relayed too: a duplicate, never a loss. Costs one atomic load per
// forwarded message while no session is moving.
const (
	relayGrace = 2 * time.Second
	relayMax   = 15 * time.Second // a B that never says done
	takeDone   = 2                // op of a take request: B installed the session
	// relayToken is the token of a relayed record: for the node's ordinary
	// subscribers, and not to be relayed again (two sessions' relays
	// between the same two nodes, one each way, would pass it back and
	// forth). A node's own shared tokens count up from 1, never this far.
	relayToken = 1<<32 - 1
)

type relays struct {
	mu     sync.Mutex
	active atomic.Int32
	m      map[string]*moved // client id → its relay (guarded by mu)
}

// moved is a session handed over from this node.
type moved struct {
	id      string
	to      string          // the node it went to
	filters []string        // its filters (ordinary ones: shared picks are the publisher's)
	pinned  map[string]bool // filters whose interest this relay holds
	buf     []byte          // records kept until done
	ready   bool            // B installed it: relay at once
	until   time.Time       // relaying ends (zero: pins left)
	timer   *time.Timer
}

// relayStart begins relaying id's messages to node to and pins its
// filters; before HandOver, so that nothing between is lost.
func (n *Node) relayStart(id, to string) *moved {
	fs, ok := n.b.SubscriptionsOf(id)
	if !ok {
		return nil
	}
	m := &moved{id: id, to: to, pinned: map[string]bool{}}
	n.imu.Lock()
	for _, f := range fs {
		if _, _, shared := trie.ParseShared(f); shared || isSys(f) {
			continue
		}
		if in := n.interest[f]; in != nil {
			in.n++
			m.pinned[f] = true
		}
		m.filters = append(m.filters, f)
	}
	n.imu.Unlock()
	if len(m.filters) == 0 {
		return nil
	}
	r := &n.relay
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]*moved{}
	}
	if old := r.m[id]; old != nil {
		n.relayEndLocked(old)
	}
	r.m[id] = m
	r.active.Add(1)
	m.timer = time.AfterFunc(relayMax, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.m[id] == m {
			n.relayEndLocked(m)
		}
	})
	r.mu.Unlock()
	return m
}

// relayCancel ends m at once (the session was not handed over with state).
func (n *Node) relayCancel(m *moved) {
	if m == nil {
		return
	}
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	if n.relay.m[m.id] == m {
		n.relayEndLocked(m)
	}
}

// relayBack: the session id comes back to this node; it is no longer
// relayed away.
func (n *Node) relayBack(id string) {
	if n.relay.active.Load() == 0 {
		return
	}
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	if m := n.relay.m[id]; m != nil {
		n.relayEndLocked(m)
	}
}

// relayEndLocked drops m and its pins. Assumes relay.mu.
func (n *Node) relayEndLocked(m *moved) {
	for f := range m.pinned {
		n.unpinLocked(m, f)
	}
	m.timer.Stop()
	delete(n.relay.m, m.id)
	n.relay.active.Add(-1)
}

// unpinLocked lets go of m's hold on f's interest. Assumes relay.mu.
func (n *Node) unpinLocked(m *moved, f string) {
	if !m.pinned[f] {
		return
	}
	delete(m.pinned, f)
	n.imu.Lock()
	if in := n.interest[f]; in != nil {
		if in.n--; in.n == 0 {
			delete(n.interest, f)
			delete(n.tokens, in.token)
			n.queue(kvOp{key: routeKey(n.cfg.NodeName, f)})
		}
	}
	n.imu.Unlock()
	if len(m.pinned) == 0 {
		m.until = time.Now().Add(relayGrace)
		m.timer.Reset(relayGrace)
	}
}

// relayRoute: this node's watch applied node's route for filter. Called
// under rmu (rmu → relay.mu → imu).
func (n *Node) relayRoute(node, filter string) {
	if n.relay.active.Load() == 0 {
		return
	}
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	for _, m := range n.relay.m {
		if m.to == node {
			n.unpinLocked(m, filter)
		}
	}
}

// relayDone: node to installed id: send what was kept, relay from now on,
// and let go of the pins of filters it routed already.
func (n *Node) relayDone(id, to string) {
	n.rmu.Lock()
	has := map[string]bool{}
	if p := n.peers[to]; p != nil {
		for _, r := range p.routes {
			has[r.filter] = true
		}
	}
	n.rmu.Unlock()
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	m := n.relay.m[id]
	if m == nil || m.to != to {
		return
	}
	if len(m.buf) > 0 {
		n.send(n.prefix+"n."+to, m.buf)
		m.buf = nil
	}
	m.ready = true
	for f := range m.pinned {
		if has[f] {
			n.unpinLocked(m, f)
		}
	}
}

// relayOut passes a forwarded message on to the nodes that sessions it
// matches moved to. Receive goroutine.
func (n *Node) relayOut(p *codec.Packet) {
	topic := string(p.Topic)
	now := time.Now()
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	for _, m := range n.relay.m {
		if !m.until.IsZero() && now.After(m.until) {
			continue
		}
		match := false
		for _, f := range m.filters {
			if trie.MatchFilter(f, topic) {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		if len(m.buf) == 0 {
			m.buf = append(m.buf, kindBatch)
		}
		m.buf = binary.AppendUvarint(m.buf, relayToken)
		m.buf = p.Encode(m.buf, codec.Version5)
		n.Stats.RelayedMsgs.Add(1)
		if m.ready {
			n.send(n.prefix+"n."+m.to, m.buf)
			m.buf = nil
		}
	}
}

// takeReq is a take request: op (0 clean, 1 resume, takeDone), the asking
// node's name (uvarint length first), the client id.
func takeReq(op byte, node, id string) []byte {
	b := binary.AppendUvarint([]byte{op}, uint64(len(node)))
	return append(append(b, node...), id...)
}

// parseTakeReq reads a take request.
func parseTakeReq(b []byte) (op byte, node, id string, ok bool) {
	if len(b) < 2 {
		return 0, "", "", false
	}
	l, k := binary.Uvarint(b[1:])
	if k <= 0 || uint64(len(b)-1-k) < l {
		return 0, "", "", false
	}
	return b[0], string(b[1+k : 1+k+int(l)]), string(b[1+k+int(l):]), true
}
