package session

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/trie"
)

// Remote is a subscriber that stands for another node of a cluster: the
// node's filters are its subscriptions in the local trie, so one match
// yields local subscribers and remote nodes together, and a message
// delivered to it is forwarded to the node.
type Remote interface {
	trie.Subscriber
	// Slot is a small index of the node, unique among live Remotes, that
	// names its buffer in a loop turn's Output.
	Slot() int
	// Append encodes m for the node onto dst. token is 0 for the node's
	// ordinary subscriptions, or names the shared subscription whose pick
	// fell on the node.
	Append(dst []byte, m *Message, token uint32, now int64) []byte
	// Confirm numbers a confirmation that the node is to give once what
	// is forwarded to it with it is stored there (in its store and, for its
	// offline persistent sessions, on the cluster's quorum): the acks of the
	// publishers of those messages wait for the number (Broker.Replicated).
	// 0: the cluster asks for no confirmation.
	Confirm() uint64
	// Send passes one batch of appended messages to the node; b is reused
	// once Send returns. confirm (0: none) is the number Confirm gave for
	// a message of the batch: the node is asked to confirm it.
	Send(b []byte, confirm uint64)
	// Hold is how the node holds back the publishers that forward to it
	// (cross-node back-pressure); nil: never.
	Hold() *RemoteHold
}

// Cluster is what the broker tells the other nodes. nil on a single node.
type Cluster interface {
	// Retained is told that a client set (m) or cleared (m == nil) the
	// retained message of topic on this node. It must copy what it keeps.
	Retained(topic []byte, m *Message)
	// Subscribing is asked before a SUBSCRIBE's filters are added: it
	// reports whether the other nodes already route them to this node. If
	// not, it announces them, begins t and answers t once the other nodes
	// know them (or a bound has passed); the SUBSCRIBE, parked meanwhile, is
	// then handled again, so that its SUBACK comes after the routes and a
	// message published on any node after the SUBACK is delivered.
	// Loop-only (t's connection's loop).
	Subscribing(t *Ticket, filters []string) bool
}

// SetCluster installs the cluster's hooks. Call it before the listeners
// open.
func (b *Broker) SetCluster(c Cluster) { b.cluster = c }

// Subs is the broker's subscription trie, where a cluster puts its remote
// nodes' filters.
func (b *Broker) Subs() *trie.Trie { return b.subs }

// routesKnown asks the cluster whether the filters of a SUBSCRIBE (those
// not refused) are known to the other nodes; false: parked until they are.
func (c *Client) routesKnown(p *codec.Packet, refused []bool) bool {
	filters := make([]string, 0, len(p.Subscriptions))
	for i := range p.Subscriptions {
		if refused != nil && refused[i] {
			continue
		}
		f := string(p.Subscriptions[i].Filter)
		if mp := c.pol.MountPoint; mp != "" {
			group, inner, shared := trie.ParseShared(f)
			if !shared {
				inner = f
			}
			f = mountFilter(group, mp+inner, shared)
		}
		filters = append(filters, f)
	}
	return c.b.cluster.Subscribing(c.Ticket(), filters)
}

// forward hands m to a remote node: batched in the publisher's loop turn
// when there is one, else sent at once (wills, $SYS, work off the loops).
// With confirm (a QoS 1/2 message whose publisher waits for its ack), it
// returns the number of the node's confirmation that the ack waits for
// (0: none).
func (b *Broker) forward(rem Remote, m *Message, token uint32, out *Output, now int64, confirm bool) uint64 {
	if m.fwdID == 0 { // deliverAll gave it one, unless it came another way
		m.fwdID = nextForwardID(out)
	}
	if out == nil {
		var k uint64
		if confirm {
			k = b.persist.numbered(rem.Confirm())
		}
		rem.Send(rem.Append(nil, m, token, now), k)
		return k
	}
	slot := rem.Slot()
	for len(out.fwds) <= slot {
		out.fwds = append(out.fwds, fwdBuf{})
	}
	f := &out.fwds[slot]
	if f.to == nil {
		f.to = rem
		out.pending = append(out.pending, int32(slot))
	}
	f.buf = rem.Append(f.buf, m, token, now)
	if confirm && f.confirm == 0 { // one confirmation covers the turn's batch
		f.confirm = b.persist.numbered(rem.Confirm())
	}
	return f.confirm
}

// Forward ids: each loop's Output counts up from a random start, the
// other senders share one counter that does the same, so ids are
// distinct across the cluster (ranges of 2^64 random starts do not meet)
// and those of one batch close together (sent as differences).
var soloForwardID atomic.Uint64

// An odd start counted up by 2 stays odd: never 0, and never the same id
// twice (Add(1)|1 gave each id to two messages in a row).
func init() { soloForwardID.Store(rand.Uint64() | 1) }

func nextForwardID(out *Output) uint64 {
	if out == nil {
		return soloForwardID.Add(2)
	}
	if out.fwdNext == 0 {
		out.fwdNext = rand.Uint64() | 1
	}
	id := out.fwdNext
	out.fwdNext++
	if out.fwdNext == 0 {
		out.fwdNext = 1
	}
	return id
}

// fwdBuf is one turn's messages for one remote node.
type fwdBuf struct {
	to      Remote
	buf     []byte
	confirm uint64 // the node's confirmation asked for (Remote.Confirm), 0: none
}

// FlushForwards sends the turn's batches, one per remote node. The
// transport calls it at the end of every turn (loop-only, like Output).
func (o *Output) FlushForwards() {
	if len(o.pending) == 0 {
		return
	}
	for _, slot := range o.pending {
		f := &o.fwds[slot]
		f.to.Send(f.buf, f.confirm)
		f.to, f.confirm = nil, 0
		if cap(f.buf) > 1<<20 { // don't keep a huge buffer after a large message
			f.buf = nil
		}
		f.buf = f.buf[:0]
	}
	o.pending = o.pending[:0]
}

// RemoteHold carries back-pressure across nodes: a node whose subscribers'
// queues fill with what another node forwards asks that node to hold its
// publishers back, as a filling queue holds a local publisher (Session.deliver):
// a publisher whose message was forwarded to a holding node is held (not
// read) until the node lets go, or until the hold lapses (the node went
// silent). The node's granularity: every publisher forwarding to it waits.
type RemoteHold struct {
	until   atomic.Int64 // unix ns; holding while now is before it
	mu      sync.Mutex
	waiters []*Client
}

// Hold holds back the publishers forwarding to the node for d from now
// (renewed while the node still asks). Any goroutine.
func (h *RemoteHold) Hold(d time.Duration) { h.until.Store(time.Now().Add(d).UnixNano()) }

// Release lets the held publishers go on. Any goroutine.
func (h *RemoteHold) Release() {
	h.until.Store(0)
	h.mu.Lock()
	w := h.waiters
	h.waiters = nil
	h.mu.Unlock()
	wakeAll(w)
}

// Holding reports whether the node asks to be spared now.
func (h *RemoteHold) Holding(now int64) bool { return now < h.until.Load() }

// holdPublisher registers pub, whose message was just forwarded, to be
// held while h holds. pub's loop.
func (h *RemoteHold) holdPublisher(pub *Client, now int64) bool {
	if !h.Holding(now) {
		return false
	}
	x := pub.more()
	if x.heldBy == h {
		return true
	}
	x.heldBy = h // one node at a time: its release or lapse makes it look again
	h.mu.Lock()
	h.waiters = append(h.waiters, pub)
	h.mu.Unlock()
	return true
}

// stillHeldRemote is StillHeld for a remote node's hold. Loop-only.
func (c *Client) stillHeldRemote(now int64) bool {
	h := c.extra.heldBy
	if h.Holding(now) {
		return true
	}
	c.extra.heldBy = nil
	h.mu.Lock()
	for i, w := range h.waiters {
		if w == c {
			h.waiters = append(h.waiters[:i], h.waiters[i+1:]...)
			break
		}
	}
	h.mu.Unlock()
	return false
}

// Holdback is the publisher a node's deliveries of another node's forwards
// stand for: when one of them fills a subscriber's queue, Held reports so
// until that queue drains (or its subscriber is stuck), and the node asks
// the sender to hold its publishers meanwhile (RemoteHold).
type Holdback struct {
	c    Client
	wake chan struct{}
}

// fromNode reports whether pub stands for another node's forwards: past a
// connected subscriber's queue limit, its QoS 0 is queued as QoS 1/2 is for
// a held local publisher, since the sending node is being held back (what
// it had in flight is bounded) and dropping it would lose what one node
// would not.
func (pub *Client) fromNode() bool {
	if pub == nil {
		return false
	}
	_, ok := pub.t.(*Holdback)
	return ok
}

// NewHoldback makes a Holdback (not a connection: no stats).
func (b *Broker) NewHoldback() *Holdback {
	h := &Holdback{wake: make(chan struct{}, 1)}
	h.c.b, h.c.t, h.c.pol = b, h, &b.policy
	return h
}

// Wake implements Transport: the queue it waited on has drained.
func (h *Holdback) Wake() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Close implements Transport.
func (h *Holdback) Close() {}

// RemoteAddr implements Transport.
func (h *Holdback) RemoteAddr() string { return "cluster" }

// Woken is signalled when the queue h waits on may have drained.
func (h *Holdback) Woken() <-chan struct{} { return h.wake }

// Held reports whether a queue that h's deliveries filled has not drained
// yet. One goroutine at a time.
func (h *Holdback) Held(now time.Time) bool { return h.c.StillHeld(now) }

// RouteForwarded delivers a PUBLISH that another node forwarded (p aliases
// the caller's buffer): with token 0 to this node's matching ordinary
// subscribers, else to one local member of the shared subscription filter
// (the publishing node chose this node for that group). Remote nodes are
// never forwarded to again, the retained store is not touched (retained
// messages replicate on their own), and No Local cannot apply: the publisher
// is not a client of this node. It returns the number of deliveries.
// Not safe for concurrent use with the same r.
func (b *Broker) RouteForwarded(p *codec.Packet, shared string, r *trie.Result, local func(trie.Subscriber) bool) int {
	n, _ := b.RouteForwardedHeld(p, 0, shared, r, local, nil)
	return n
}

// RouteForwardedHeld is RouteForwarded that also reports whether a
// subscriber's queue is filling (slow): hb (nil: none) is then held until
// it drains; fid is the message's forward id (Message.ForwardID, 0: none).
// Not safe for concurrent use with the same r or hb.
func (b *Broker) RouteForwardedHeld(p *codec.Packet, fid uint64, shared string, r *trie.Result, local func(trie.Subscriber) bool, hb *Holdback) (n int, slow bool) {
	now := time.Now().UnixNano()
	if shared == "" {
		b.subs.Match(p.Topic, nil, r)
		if len(r.Subs) == 0 {
			return 0, false
		}
		r.Shared = r.Shared[:0] // each group's pick is the publishing node's
	} else {
		d, ok := b.subs.PickShared(shared, func(s trie.Subscriber) bool { return !local(s) })
		if !ok {
			return 0, false
		}
		r.Subs, r.Shared = r.Subs[:0], append(r.Shared[:0], d)
	}
	m := newMessage(p.Topic, p, now)
	m.fwdID = fid
	pb := b.newBatch()
	var pub *Client
	if hb != nil {
		pub = &hb.c
	}
	n, slow, _, _ = b.deliverAll(m, r, pb, pub, now, nil, false)
	b.submit(pb)
	m.Release()
	return n, slow
}

// RouteForwardedTo routes a message forwarded by another node (forward id
// fid) to one session only: the node a session left passes on to the node
// it went to what still came for it. With shared empty, to the session's
// ordinary subscriptions that match; else to its membership of that shared
// subscription, or, if it has none (left the group), to another local
// member (local reports which subscribers are). Not safe for concurrent
// use with the same r.
func (b *Broker) RouteForwardedTo(p *codec.Packet, fid uint64, id, shared string, r *trie.Result, local func(trie.Subscriber) bool) int {
	now := time.Now().UnixNano()
	if shared != "" {
		other := func(s trie.Subscriber) bool { x, ok := s.(*Session); return !ok || x.ID() != id }
		d, ok := b.subs.PickShared(shared, other)
		if !ok {
			d, ok = b.subs.PickShared(shared, func(s trie.Subscriber) bool { return !local(s) })
		}
		if !ok {
			return 0
		}
		r.Subs, r.Shared = r.Subs[:0], append(r.Shared[:0], d)
	} else {
		b.subs.Match(p.Topic, nil, r)
		subs := r.Subs[:0]
		for _, d := range r.Subs {
			if s, ok := d.Sub.(*Session); ok && s.ID() == id {
				subs = append(subs, d)
			}
		}
		clear(r.Subs[len(subs):])
		r.Subs, r.Shared = subs, r.Shared[:0]
		if len(r.Subs) == 0 {
			return 0
		}
	}
	m := newMessage(p.Topic, p, now)
	m.fwdID = fid
	pb := b.newBatch()
	n, _, _, _ := b.deliverAll(m, r, pb, nil, now, nil, false)
	b.submit(pb)
	m.Release()
	return n
}

// ApplyRetained sets (p's payload not empty) or clears the retained message
// of p's topic as the cluster's state says, without telling the cluster
// back and without delivering it to anyone.
func (b *Broker) ApplyRetained(p *codec.Packet) {
	pb := b.newBatch()
	if len(p.Payload) == 0 {
		b.clearRetainedLocal(p.Topic, pb)
	} else {
		m := newMessage(p.Topic, p, time.Now().UnixNano())
		b.storeRetainedLocal(m, pb)
		m.Release()
	}
	b.submit(pb)
}

// RetainedTopics lists the topics of the retained messages held (not $SYS).
func (b *Broker) RetainedTopics() []string {
	var out []string
	b.retainMu.Lock()
	b.retained.Match("#", func(topic string, _ *Message) bool {
		out = append(out, topic)
		return true
	})
	b.retainMu.Unlock()
	return out
}

// tellCluster passes a client's retained change on to the cluster; $SYS
// topics are each node's own.
func (b *Broker) tellCluster(topic []byte, m *Message) {
	if b.cluster != nil && !bytes.HasPrefix(topic, []byte("$SYS/")) {
		b.cluster.Retained(topic, m)
	}
}

// Stat is one value that a part of the broker (a cluster) adds to $SYS
// ("$SYS/broker/" + Name) and /metrics ("midge_" + Name with '/' → '_').
type Stat struct {
	Name    string // e.g. "cluster/peers/up"
	Help    string
	Value   int64
	Text    string // a text value instead ($SYS only), e.g. the node name
	Counter bool   // ever increasing (else a gauge)
}

// AddStats registers a source of Stats. Call it before $SYS or /metrics start.
func (b *Broker) AddStats(f func() []Stat) { b.extraStats = append(b.extraStats, f) }

// ExtraStats reads every registered source now.
func (b *Broker) ExtraStats() []Stat {
	var out []Stat
	for _, f := range b.extraStats {
		out = append(out, f()...)
	}
	return out
}
