package cluster

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
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
//   - A hands the session over on its receive goroutine, between two
//     forwarded messages (the take request sends A's own subject a cut
//     marker and waits for it): each forward A received before went into
//     the session and so into the state handed over, each one after is
//     passed on to B, never both.
//   - A message of one of the session's shared subscriptions whose pick
//     the publishing node made for A, when A has no other member of the
//     group left, goes to B too (to the session's membership there, or
//     another member of B's).
//   - What A passes on goes to B as a relayed record, for that session
//     only, kept by A until B says it has installed the session ("done",
//     op 2 on A's take subject, after Install), sent at once afterwards,
//     until relayGrace after the last pin went (a forward in flight from a
//     node that was behind).
//   - When the session comes back to A before A's relay ended (A→B→A),
//     A stops passing records on to B from the start of its claim, before
//     its take request (B may hand the session over any moment, and a
//     record reaching B after that would be lost), keeps them, and, once
//     the session is installed here again, delivers them to it (relayBack,
//     relayHome), with those B never said done for; then ends the relay
//     (its pins go once the session holds the interest again).
//   - A node that had both routes for a while forwarded the same message
//     to A and to B: B sees it twice, by the forward id every copy carries
//     (wire.go), and delivers it to the session once, whichever copy comes
//     first; and so a message published on B and passed back by A, or
//     one in the state handed over that also came directly. B remembers
//     the ids for dedupFor after the install (session.SetDedupWindow: those
//     of the state handed over, then the last 4,096 to 8,192 of them).
//
// Costs one atomic load per forwarded message while no session is moving.
const (
	relayGrace = 2 * time.Second
	relayMax   = 15 * time.Second // a B that never says done
	takeDone   = 2                // op of a take request: B installed the session
	// relayToken is the token of a relayed record: for the session it
	// names only, and not to be relayed again. A node's own shared tokens
	// count up from 1, never this far.
	relayToken = 1<<32 - 1
	// cutWait bounds the take request's wait for its cut marker (a receive
	// goroutine far behind): then it hands over at once, and a message may
	// come twice.
	cutWait = time.Second
	// relayBufMax bounds the bytes A keeps for one session until B says
	// done (also max_queued_bytes and max_queued_messages, when set, as for
	// the session's own queue); past it a record is dropped and counted.
	relayBufMax = 16 << 20
	// dedupFor: how long B remembers the ids (A relays at most relayMax).
	dedupFor = relayMax + relayGrace
)

type relays struct {
	mu     sync.Mutex
	active atomic.Int32      // sessions relayed away
	m      map[string]*moved // client id → its relay (guarded by mu)
	local  *localRelay       // in the trie for what is published here
	cuts   atomic.Int64      // handovers without their cut marker in time
	max    int               // relayBufMax unless a test says otherwise
}

// moved is a session handed over from this node.
type moved struct {
	id      string
	to      string            // the node it went to
	filters []string          // its ordinary filters
	shared  map[uint32]string // this node's tokens of its shared subscriptions → filter
	pinned  map[string]bool   // filters whose interest this relay holds
	buf     []byte            // records kept until done
	kept    int               // records in buf
	payload int               // their payloads' bytes
	dropped bool              // a record did not fit in buf (logged once)
	ready   bool              // B installed it: relay at once
	back    bool              // it comes back here: keep, never send (relayBack)
	cut     bool              // handed over: what comes now is relayed
	until   time.Time         // relaying ends (zero: pins left)
	timer   *time.Timer

	// The handover on the receive goroutine (cutOver), once.
	handing atomic.Bool
	handed  chan struct{}
	state   []byte
	found   bool
}

// relayStart begins relaying id's messages to node to and pins its
// filters; before HandOver, so that nothing between is lost.
func (n *Node) relayStart(id, to string) *moved {
	fs, ok := n.b.SubscriptionsOf(id)
	if !ok {
		return nil
	}
	m := &moved{id: id, to: to, pinned: map[string]bool{}, shared: map[uint32]string{}, handed: make(chan struct{})}
	n.imu.Lock()
	for _, f := range fs {
		if isSys(f) {
			continue
		}
		in := n.interest[f]
		if in != nil {
			in.n++
			m.pinned[f] = true
		}
		if _, _, shared := trie.ParseShared(f); !shared {
			m.filters = append(m.filters, f)
		} else if in != nil {
			m.shared[in.token] = f // a pick the publishing node made for this node
		}
	}
	n.imu.Unlock()
	if len(m.pinned) == 0 && len(m.filters) == 0 {
		return nil
	}
	// What the session takes from now on is noted and handed over with it:
	// the local relay passes on what is published here from now on, and
	// the new node takes a copy the session had here as a repeat.
	n.b.RecordIDs(id, relayMax)
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
	n.localHoldLocked(m.filters, true)
	m.timer = time.AfterFunc(relayMax, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.m[id] == m && !m.back {
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

// relayBack: this node claims id's session, which it relayed away: from
// now on what the relay takes for it is kept here, not passed on, until
// relayHome or relayResume. Before the take request: the node it went to
// may hand it over any moment, and a record that reaches that node after
// is lost. It returns the relay (nil: none).
func (n *Node) relayBack(id string) *moved {
	if n.relay.active.Load() == 0 {
		return nil
	}
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	m := n.relay.m[id]
	if m != nil {
		m.back = true
		m.timer.Stop() // ends with the claim
	}
	return m
}

// relayHome ends m (relayBack's) once the claim is done. deliver: the
// session is this node's again (installed, or its CONNECT resumes it):
// what m kept goes to it, with its forward ids, so that the dedup window
// drops what it took already the other way; else (a clean start) it is
// let go. The pins go last: the session holds the interest by then.
func (n *Node) relayHome(m *moved, deliver bool) {
	if m == nil {
		return
	}
	var p codec.Packet
	var res trie.Result
	r := &n.relay
	for {
		r.mu.Lock()
		if r.m[m.id] != m {
			r.mu.Unlock()
			return
		}
		buf := m.buf
		m.buf, m.kept, m.payload = nil, 0, 0
		if len(buf) == 0 || !deliver {
			n.relayEndLocked(m)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		err := eachRecord(buf[1:], &p, func(_ uint32, fid uint64, client, shared []byte, p *codec.Packet) {
			n.b.RouteForwardedTo(p, fid, string(client), string(shared), &res, n.isLocal)
		})
		if err != nil {
			n.log.Printf("cluster %s: %v", n.cfg.Name, err)
		}
	}
}

// relayResume: the claim that began with relayBack failed; the session
// stays where it went, and m passes records on to it again.
func (n *Node) relayResume(m *moved) {
	if m == nil {
		return
	}
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	if n.relay.m[m.id] != m || !m.back {
		return
	}
	m.back = false
	if m.ready && len(m.buf) > 0 {
		n.send(n.prefix+"n."+m.to, m.buf)
		m.buf, m.kept, m.payload = nil, 0, 0
	}
	if len(m.pinned) == 0 {
		m.timer.Reset(relayGrace)
	} else {
		m.timer.Reset(relayMax)
	}
}

// relayEndLocked drops m and its pins. Assumes relay.mu.
func (n *Node) relayEndLocked(m *moved) {
	if m.kept > 0 { // the new node never said it installed the session
		n.Stats.RelayDropped.Add(int64(m.kept))
		n.log.Printf("cluster %s: %d messages kept for %s, moved to %s, dropped: the relay ended before %s said it installed the session",
			n.cfg.Name, m.kept, m.id, m.to, m.to)
		m.buf, m.kept, m.payload = nil, 0, 0
	}
	for f := range m.pinned {
		n.unpinLocked(m, f)
	}
	n.localHoldLocked(m.filters, false)
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
	if len(m.buf) > 0 && !m.back {
		n.send(n.prefix+"n."+to, m.buf)
		m.buf, m.kept, m.payload = nil, 0, 0
	}
	m.ready = true
	for f := range m.pinned {
		if has[f] {
			n.unpinLocked(m, f)
		}
	}
}

// handOver hands id's session over to node to, its state returned, and
// starts relaying what comes after for it (m, from relayStart; nil: no
// relay). Take subscription's goroutine.
func (n *Node) handOver(m *moved, id string) (state []byte, found bool) {
	if m == nil {
		return n.b.HandOver(id, true)
	}
	n.send(n.prefix+"n."+n.cfg.NodeName, append([]byte{kindCut}, id...))
	select {
	case <-m.handed:
		return m.state, m.found
	case <-time.After(cutWait):
	}
	if !m.handing.CompareAndSwap(false, true) {
		<-m.handed // the receive goroutine is at it
		return m.state, m.found
	}
	n.relay.cuts.Add(1)
	n.log.Printf("cluster %s: session %q handed over without its cut (the forwards' intake is behind): a message may come twice", n.cfg.Name, id)
	n.relay.mu.Lock()
	m.cut = true // before: a message routed meanwhile must not be lost
	n.relay.mu.Unlock()
	m.state, m.found = n.b.HandOver(id, true)
	close(m.handed)
	return m.state, m.found
}

// cutOver is the cut marker for id's handover: the receive goroutine hands
// the session over between two forwarded messages.
func (n *Node) cutOver(id string) {
	n.relay.mu.Lock()
	m := n.relay.m[id]
	n.relay.mu.Unlock()
	if m == nil || !m.handing.CompareAndSwap(false, true) {
		return
	}
	m.state, m.found = n.b.HandOver(id, true)
	n.relay.mu.Lock()
	m.cut = true
	n.relay.mu.Unlock()
	close(m.handed)
}

// relayOut passes a forwarded message (forward id fid) on to the nodes that
// sessions it matches moved to. Receive goroutine.
func (n *Node) relayOut(p *codec.Packet, fid uint64) {
	topic := string(p.Topic)
	now := time.Now()
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	for _, m := range n.relay.m {
		if !m.cut || !m.until.IsZero() && now.After(m.until) {
			continue
		}
		if !matchAny(m.filters, topic) {
			continue
		}
		n.relayLocked(m, p, fid, "")
	}
}

// relayLocked adds a record for m's session (for its shared subscription
// filter, or ordinary) to what goes to its node. Assumes relay.mu.
func (n *Node) relayLocked(m *moved, p *codec.Packet, fid uint64, filter string) {
	before := len(m.buf)
	m.buf = appendRelayed(m.buf, p, fid, m.id, filter)
	if m.ready && !m.back {
		n.Stats.RelayedMsgs.Add(1)
		n.send(n.prefix+"n."+m.to, m.buf)
		m.buf = m.buf[:0]
		return
	}
	o := n.b.Options()
	max := n.relay.max
	if max == 0 {
		max = relayBufMax
	}
	if len(m.buf) > max || (o.MaxQueuedMessages > 0 && m.kept >= o.MaxQueuedMessages) ||
		(o.MaxQueuedBytes > 0 && m.payload+len(p.Payload) > o.MaxQueuedBytes) {
		m.buf = m.buf[:before]
		n.Stats.RelayDropped.Add(1)
		n.b.Stats.PublishDropped.Add(1) // as a full queue's
		if !m.dropped {
			m.dropped = true
			n.log.Printf("cluster %s: session %q: node %s has not installed it yet and %d messages (%d bytes) wait for it: dropping what comes for it meanwhile",
				n.cfg.Name, m.id, m.to, m.kept, before)
		}
		return
	}
	m.kept++
	m.payload += len(p.Payload)
	n.Stats.RelayedMsgs.Add(1)
}

// relayShared passes on a message whose shared pick the publishing node
// made for this node (token), when no member of that group is left here
// but a session that moved away: to that session's node. It reports
// whether it did. Receive goroutine.
func (n *Node) relayShared(p *codec.Packet, fid uint64, token uint32) bool {
	now := time.Now()
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	for _, m := range n.relay.m {
		if !m.cut || !m.until.IsZero() && now.After(m.until) {
			continue
		}
		if f, ok := m.shared[token]; ok {
			n.relayLocked(m, p, fid, f)
			return true
		}
	}
	return false
}

func matchAny(filters []string, topic string) bool {
	for _, f := range filters {
		if trie.MatchFilter(f, topic) {
			return true
		}
	}
	return false
}

// deliverMoving is deliver while sessions move: a relayed record goes to
// its session only; what matches a session that left is relayed. Receive
// goroutine.
func (n *Node) deliverMoving(token uint32, fid uint64, client, shared []byte, p *codec.Packet) {
	if token == relayToken {
		n.b.RouteForwardedTo(p, fid, string(client), string(shared), &n.recvRes, n.isLocal)
		return
	}
	delivered := n.deliverDirect(token, fid, p)
	switch {
	case token == 0:
		n.relayOut(p, fid)
	case delivered == 0:
		n.relayShared(p, fid, token)
	}
}

// localRelay stands, in this node's trie, for the sessions relayed away
// (for their ordinary filters): a message published on this node for one
// of them goes to its new node too. From the relay's start, before the
// handover: the session notes the forward ids of what it takes from then
// on (session.RecordIDs) and hands them over, and the new node takes such
// a message once.
type localRelay struct {
	n    *Node
	slot int
	subs map[string]int // filter → relays holding it (guarded by relay.mu)
}

var _ session.Remote = (*localRelay)(nil)

func (l *localRelay) Busy() bool                { return false }
func (l *localRelay) Hold() *session.RemoteHold { return nil }
func (l *localRelay) Slot() int                 { return l.slot }
func (l *localRelay) Send([]byte, uint64)       {} // Append has sent it
func (l *localRelay) Confirm() uint64           { return 0 }

// Append passes m on to the new node of each session relayed away that it
// matches (at once, or kept until that node says done); dst is left as it
// is. The publisher's loop.
func (l *localRelay) Append(dst []byte, msg *session.Message, _ uint32, now int64) []byte {
	n := l.n
	var p codec.Packet
	fillPacket(&p, msg, now)
	topic := string(msg.Topic)
	until := time.Unix(0, now)
	n.relay.mu.Lock()
	defer n.relay.mu.Unlock()
	for _, m := range n.relay.m {
		if (m.until.IsZero() || !until.After(m.until)) && matchAny(m.filters, topic) {
			n.relayLocked(m, &p, msg.ForwardID(), "")
		}
	}
	return dst
}

// localHoldLocked subscribes the local relay to filters (hold) or lets go
// of them. Assumes relay.mu.
func (n *Node) localHoldLocked(filters []string, hold bool) {
	l := n.relay.local
	t := n.b.Subs()
	for _, f := range filters {
		switch {
		case hold:
			if l.subs[f]++; l.subs[f] == 1 {
				_, _ = t.Subscribe(l, f, trie.Options{QoS: 2})
			}
		case l.subs[f] > 0:
			if l.subs[f]--; l.subs[f] == 0 {
				delete(l.subs, f)
				t.Unsubscribe(l, f)
			}
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
