package session

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/midge-mqtt/midge/store"
	"github.com/midge-mqtt/midge/trie"
)

// Session is the state of one client id that outlives its connections
// [MQTT-4.1]: the outgoing queue, the inflight windows both ways, and expiry.
// Subscriptions live in the broker's trie, keyed by the *Session. Messages are
// delivered into the queue from any goroutine; the connected Client drains it
// on its own loop.
//
// Lock order: registry.mu, then Session.mu. The trie's locks may be taken
// while holding either; the trie never calls back into a session except
// Busy, which takes no lock.
type Session struct {
	// Fields are grouped by size so that the struct packs without padding:
	// one Session is held per connected client, so its size class is part
	// of the cost of every idle connection.
	b           *Broker
	reader      atomic.Pointer[reader] // who reads this session's messages, for ACL checks, and its client id
	owner       *Client                // connected client, nil when offline; guarded by mu
	queue       []entry                // messages not yet sent, oldest first, from head
	fl          *flows                 // QoS 1/2 flows in progress; nil until the first (flows, newFlows)
	waiters     *waitList              // publishers held back until this queue drains (nil: never any)
	p           *persisted             // what only the store needs; nil until the broker persists this session
	queuedBytes int
	lastDrain   int64 // unix ns when its connection last took messages (stuck detection)

	mu          sync.Mutex
	connectedAt atomic.Uint32 // unix seconds of its owner's CONNECT (the dashboard's clients page; 32 bits last until 2106)
	online      atomic.Bool   // a client is connected (read by Busy without the lock)
	queued      atomic.Int32  // len(queue)-head, mirrored for Busy
	head        int32         // index of the oldest queued entry
	expiry      uint32        // session expiry interval, seconds (math.MaxUint32: never)
	timerGen    uint32        // bumps to cancel pending expiry / will timers (compared for equality only)
	nextID      uint16
	version     byte // protocol level of the last connection
	woken       bool // owner has been asked to drain and has not yet
	stored      bool // the store holds a record of this session
	ended       bool
	replaced    bool // ended by a new connection for its client id (cancels a delayed will)
	// connecting: offline, but a bridge is connecting to its remote for it
	// (Broker.Connecting): QoS 0 is queued, as for a connected session.
	connecting bool
}

// flows are a session's QoS 1/2 exchanges in progress. They are kept apart
// from the Session, made on the first one, so that a session that never
// has any (an idle client, a QoS 0 subscriber) does not pay for their two
// slice headers: 144 bytes per Session instead of 192.
type flows struct {
	inflight    []inflight // outgoing QoS 1/2 not yet complete, in send order
	awaitingRel []uint16   // inbound QoS 2 packet ids between PUBREC and PUBREL [MQTT-4.3.3]
	recent      *recentIDs // a cluster's takeover: messages already had (DedupFor)
}

// noFlows stands for the flows of a session that has none. Read-only: it is
// shared by every such session.
var noFlows flows

// flows returns the session's flows for reading or changing existing
// entries (never nil; empty if it has none). Assumes s.mu is held.
func (s *Session) flows() *flows {
	if s.fl == nil {
		return &noFlows
	}
	return s.fl
}

// newFlows returns the session's flows for adding to, making them on first
// use. Assumes s.mu is held.
func (s *Session) newFlows() *flows {
	if s.fl == nil {
		s.fl = new(flows)
	}
	return s.fl
}

// waitList holds the publishers held back by one session's queue. It is
// allocated the first time the queue fills: most sessions never hold anyone.
type waitList struct{ cs []*Client }

// reader is the identity and policy a session's messages are checked
// against on delivery: its last client's.
type reader struct {
	pol  *Policy
	info ClientInfo
}

// readAccess checks the session's read access to m's topic (ACLs are
// checked on delivery, as mosquitto does). Wait: the answer needs I/O and is
// being fetched; wake (if not nil) is called once it is in. Any goroutine.
func (s *Session) readAccess(m *Message, wake func()) Decision {
	r := s.reader.Load()
	if r == nil || r.pol.Auth == nil {
		return Allowed
	}
	// The message's topic is immutable: lend it without a copy.
	topic := unsafe.String(unsafe.SliceData(m.Topic), len(m.Topic))
	if ra, ok := r.pol.Auth.(ReadAsker); ok {
		return ra.AskRead(&r.info, topic, wake)
	}
	if r.pol.Auth.Allow(&r.info, topic, AccessRead) {
		return Allowed
	}
	return Denied
}

// entry is one message waiting in a session's queue.
type entry struct {
	m      *Message
	qos    byte
	retain bool // the RETAIN flag to send
	// ask: the reader's read access was not known when it was queued (an
	// auth service's answer was being fetched); asked again before it is sent.
	ask bool
	ids []uint32 // subscription identifiers (immutable, owned by the trie)
	seq uint64   // the store's key for it (0: not stored)
}

// inflight is an outgoing QoS 1/2 message awaiting acknowledgement.
type inflight struct {
	id     uint16
	e      entry
	pubrel bool // PUBREC received: PUBREL sent (or due), awaiting PUBCOMP
	// unsent: its PUBLISH waits for durable, the store's number of the batch
	// that holds its packet id (a persistent session's QoS 2, and whatever
	// follows it in the window, which keeps its place). With pubrel, durable
	// is the batch that holds "PUBREC received", which PUBREL waits for.
	unsent  bool
	durable uint64
}

// heldForStore marks an unsent inflight entry whose batch is not submitted yet.
const heldForStore = math.MaxUint64

// newSession makes the session of r's client id.
func newSession(b *Broker, r *reader) *Session {
	s := &Session{b: b}
	s.reader.Store(r)
	return s
}

// ID is the client identifier, kept in the reader rather than in a field of
// its own: a client id's reader never changes it, and every Session saves
// the string header (16 bytes, its size class from 144 to 128 bytes).
func (s *Session) ID() string { return s.reader.Load().info.ClientID }

// Busy implements trie.Subscriber: a shared-subscription pick skips members
// that are offline or whose queue is full.
func (s *Session) Busy() bool {
	if !s.online.Load() {
		return true
	}
	limit := s.b.opts.MaxQueuedMessages
	return limit > 0 && int(s.queued.Load()) >= limit
}

// deliver queues m for this session with the given QoS and flags, and wakes
// the owner loop when the queue goes from idle to pending. Any goroutine.
// Returns false when the message was dropped (queue full, or QoS 0 for an
// offline session).
//
// A connected session whose queue passes half its limit reports slow: the
// publisher is then read no further until the queue drains, so that a
// subscriber that keeps up loses nothing to the batching of many publishers.
// At the limit, QoS 0 is dropped (and counted); QoS 1/2 for a connected
// session is still queued, since its publisher is being held back (its acks
// and further reads wait), and dropped only for an offline session, as
// mosquitto does. force (retained messages sent on SUBSCRIBE) ignores the
// limits: those are bounded by the retained store.
//
// A message whose record went into pb is not announced to the subscriber
// here: its client is returned as wakeAfterSubmit, to be woken once pb is
// submitted, so that the record reaches the store before the subscriber
// can acknowledge (and delete) it. quorum is the number of the cluster's
// replicated write of the message (an offline session's), which the
// publisher's acknowledgement waits for (0: none).
func (s *Session) deliver(m *Message, qos byte, retain, ask, shared bool, ids []uint32, pb *store.Batch, force bool, pub *Client, now int64) (queued, slow bool, wakeAfterSubmit *Client, quorum uint64) {
	opts := &s.b.opts
	s.mu.Lock()
	if s.ended || (s.owner == nil && qos == 0 && !opts.QueueQoS0 && !s.connecting) {
		s.mu.Unlock()
		return false, false, nil, 0
	}
	// force: retained on subscribe, sent again by right. shared: a shared
	// subscription's copy is the session's own besides its ordinary one, and
	// one pick per group never comes two ways (dedup.go).
	if !force && !shared && s.fl != nil && s.fl.recent != nil && s.repeatedLocked(m, now) {
		s.mu.Unlock()
		s.b.Stats.DuplicatesDropped.Add(1)
		return false, false, nil, 0
	}
	n := len(s.queue) - int(s.head)
	if !force && ((opts.MaxQueuedMessages > 0 && n >= opts.MaxQueuedMessages) ||
		(opts.MaxQueuedBytes > 0 && s.queuedBytes+len(m.Payload) > opts.MaxQueuedBytes)) {
		moving := s.movingLocked(now)
		if (qos == 0 && !pub.fromNode()) || !moving {
			if moving {
				s.addWaiterLocked(pub)
			}
			s.mu.Unlock()
			s.b.Stats.PublishDropped.Add(1)
			return false, moving, nil, 0
		}
		slow = true
	}
	if s.fl != nil && s.fl.recent != nil && !force && !shared {
		s.tookLocked(m) // noted only once queued (dedup.go)
	}
	m.retain()
	e := entry{m: m, qos: qos, retain: retain, ask: ask, ids: ids}
	if pb != nil && qos > 0 && s.expiry > 0 { // a persistent session's QoS 1/2 survives a restart
		e.seq = s.b.persist.nextSeq()
		s.storeQueuedLocked(pb, &e, 0, false)
	}
	s.queue = append(s.queue, e)
	s.queuedBytes += len(m.Payload)
	s.queued.Store(int32(n + 1))
	if s.owner == nil && qos > 0 && s.expiry > 0 && s.b.sessions != nil {
		quorum = s.b.replicateQueuedLocked(s, &e) // handover.go
	}
	if !slow && (n+1 >= s.b.softQueue || (s.b.softBytes > 0 && s.queuedBytes >= s.b.softBytes)) {
		slow = s.movingLocked(now)
	}
	if slow {
		s.addWaiterLocked(pub) // woken when the queue has drained (takeWaitersLocked)
	}
	var wake *Client
	if s.owner != nil && !s.woken {
		s.woken = true
		wake = s.owner
	}
	s.mu.Unlock()
	if wake != nil && e.seq != 0 {
		return true, slow, wake, quorum
	}
	if wake != nil {
		wake.t.Wake()
	}
	return true, slow, nil, quorum
}

// stuckAfter is how long a connected subscriber may take no messages at all
// before it counts as stuck: publishers are no longer held back for it, and
// its overflow is dropped (a dead subscriber must not stall anyone).
const stuckAfter = time.Second

// movingLocked reports whether the session is connected and its connection
// has taken messages lately. Assumes s.mu is held.
func (s *Session) movingLocked(now int64) bool {
	return s.owner != nil && now-s.lastDrain < int64(stuckAfter)
}

// takeWaitersLocked returns the publishers held back by this queue once it
// has drained (drainedLocked), or all of them when
// force is set (the session ends or goes offline). Wake them after
// unlocking. Assumes s.mu is held.
func (s *Session) takeWaitersLocked(force bool) []*Client {
	if s.waiters == nil || len(s.waiters.cs) == 0 || (!force && !s.drainedLocked()) {
		return nil
	}
	w := s.waiters.cs
	s.waiters.cs = nil
	for _, c := range w {
		c.waitingOn.Store(nil)
	}
	return w
}

// addWaiterLocked registers a held-back publisher, once: a publisher waits
// on one queue at a time (when woken it finds out whether another is full).
// Assumes s.mu is held.
func (s *Session) addWaiterLocked(pub *Client) {
	if pub != nil && pub.waitingOn.CompareAndSwap(nil, s) {
		if s.waiters == nil {
			s.waiters = new(waitList)
		}
		s.waiters.cs = append(s.waiters.cs, pub)
	}
}

// wakeAll wakes held-back publishers. Any goroutine, no lock held.
func wakeAll(waiters []*Client) {
	for _, c := range waiters {
		c.t.Wake()
	}
}

// recheckQueueLocked drops the queued messages the session's reader may no
// longer read: an ACL file reloaded (SIGHUP) while the client was away
// applies to what waits for it, as mosquitto checks a queue on reconnect.
// Assumes s.mu is held; called only when a resumed session has ACLs.
func (s *Session) recheckQueueLocked(pb *store.Batch) {
	s.filterQueueLocked(pb, func(e *entry) bool {
		// A QoS 1/2 message now denied stays, to be asked again and
		// dropped when its turn comes (Drain): mosquitto numbers a message
		// when it queues it, so a dropped one has used its packet id then,
		// and the ids the client sees match mosquitto's.
		d := s.readAccess(e.m, nil)
		e.ask = d != Allowed
		return d == Allowed || d == Wait || e.qos > 0
	})
}

// dropQueuedQoS0Locked drops the QoS 0 messages still queued when a
// persistent session's connection ends. MQTT lets a server keep QoS 0 for
// an offline session [MQTT-3.1.2-5]; midge does so only with
// queue_qos0_messages, and mosquitto, which has already written them to the
// gone connection, never sends them on the resumed one. Assumes s.mu is held.
func (s *Session) dropQueuedQoS0Locked(pb *store.Batch) {
	s.filterQueueLocked(pb, func(e *entry) bool { return e.qos > 0 })
}

// filterQueueLocked keeps, in order, the queued entries keep accepts (keep
// may update them) and releases the others. Assumes s.mu is held.
func (s *Session) filterQueueLocked(pb *store.Batch, keep func(e *entry) bool) {
	h := int(s.head)
	kept := s.queue[:h]
	for i := h; i < len(s.queue); i++ {
		e := s.queue[i]
		if keep(&e) {
			kept = append(kept, e)
			continue
		}
		s.queuedBytes -= len(e.m.Payload)
		s.unstoreLocked(pb, &e, false)
		e.m.Release()
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	s.queued.Store(int32(len(s.queue) - h))
}

// pop removes the oldest queued entry. Assumes s.mu is held and the queue is not empty.
func (s *Session) pop() entry {
	h := int(s.head)
	e := s.queue[h]
	s.queue[h] = entry{}
	h++
	s.queuedBytes -= len(e.m.Payload)
	switch {
	case h == len(s.queue):
		if cap(s.queue) > 1024 { // give a burst's memory back
			s.queue = nil
		}
		s.queue, h = s.queue[:0], 0
	case h >= 256 && h*2 >= len(s.queue):
		// A queue that never empties would otherwise grow its backing
		// array forever: move the live half to the front (amortised O(1)).
		// So head stays below half the queue's length, well within int32.
		n := copy(s.queue, s.queue[h:])
		clear(s.queue[n:])
		s.queue, h = s.queue[:n], 0
	}
	s.head = int32(h)
	s.queued.Store(int32(len(s.queue) - h))
	return e
}

// allocID returns a packet id not in flight [MQTT-2.2.1-3]. Assumes s.mu is
// held and fewer than 65535 messages are in flight.
func (s *Session) allocID() uint16 {
	for {
		s.nextID++
		if s.nextID == 0 {
			s.nextID = 1
		}
		if s.findInflight(s.nextID) < 0 {
			return s.nextID
		}
	}
}

// findInflight returns the index of id in the inflight window, or -1. Acks
// mostly come in order, so the front is checked first.
func (s *Session) findInflight(id uint16) int {
	fl := s.flows().inflight
	for i := range fl {
		if fl[i].id == id {
			return i
		}
	}
	return -1
}

// removeInflight ends the i-th inflight flow (and its stored copy).
func (s *Session) removeInflight(i int, pb *store.Batch) {
	fl := s.fl // not nil: it holds the i-th flow
	f := &fl.inflight[i]
	s.unstoreLocked(pb, &f.e, f.e.qos == 2) // sent QoS 2 was stored again with its id
	f.e.m.Release()
	copy(fl.inflight[i:], fl.inflight[i+1:])
	fl.inflight[len(fl.inflight)-1] = inflight{}
	fl.inflight = fl.inflight[:len(fl.inflight)-1]
}

// inflightBytes is the payload bytes of the outgoing QoS 1/2 messages in
// flight (max_inflight_bytes). Assumes s.mu is held.
func (s *Session) inflightBytes() int {
	n := 0
	fl := s.flows().inflight
	for i := range fl {
		n += len(fl[i].e.m.Payload)
	}
	return n
}

func (s *Session) hasAwaitingRel(id uint16) bool {
	for _, x := range s.flows().awaitingRel {
		if x == id {
			return true
		}
	}
	return false
}

func (s *Session) removeAwaitingRel(id uint16) bool {
	if s.fl == nil {
		return false
	}
	ids := s.fl.awaitingRel
	for i, x := range ids {
		if x == id {
			ids[i] = ids[len(ids)-1]
			s.fl.awaitingRel = ids[:len(ids)-1]
			return true
		}
	}
	return false
}

// clear drops every queued and inflight message. Assumes s.mu is held.
func (s *Session) clear() {
	for int(s.head) < len(s.queue) {
		s.pop().m.Release()
	}
	for i := range s.flows().inflight {
		s.flows().inflight[i].e.m.Release()
	}
	s.fl, s.queue, s.head, s.queuedBytes = nil, nil, 0, 0
	s.queued.Store(0)
}

// neverExpires is the v5 session expiry that means "never" [MQTT-3.1.2-?].
const neverExpires = math.MaxUint32

// persisted is what a session keeps only for the store: allocated when the
// broker persists, so that a broker without persistence does not pay for
// it on every connection.
type persisted struct {
	subs      map[string]trie.Options // subscriptions, as the store records them
	willRec   *store.Message          // the will the store keeps for this session (own copy), or nil
	willDelay uint32
	offSince  int64 // unix ns of the last disconnect (0: connected)
	nodeLocal bool  // a bridge's local session: never replicated to a cluster (handover.go)
}

// pers returns the session's store-only state, making it on first use.
// Assumes s.mu is held (or the session is not shared yet).
func (s *Session) pers() *persisted {
	if s.p == nil {
		s.p = new(persisted)
	}
	return s.p
}

// dropWillRecLocked forgets the will kept for the store. Assumes s.mu is held.
func (s *Session) dropWillRecLocked() {
	if s.p != nil {
		s.p.willRec, s.p.willDelay = nil, 0
	}
}
