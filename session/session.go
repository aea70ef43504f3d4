package session

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

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
	id          string
	reader      atomic.Pointer[reader] // who reads this session's messages, for ACL checks
	owner       *Client                // connected client, nil when offline; guarded by mu
	queue       []entry                // messages not yet sent, oldest first, from head
	inflight    []inflight             // outgoing QoS 1/2 not yet complete, in send order
	awaitingRel []uint16               // inbound QoS 2 packet ids between PUBREC and PUBREL [MQTT-4.3.3]
	waiters     *waitList              // publishers held back until this queue drains (nil: never any)
	p           *persisted             // what only the store needs; nil until the broker persists this session
	queuedBytes int
	lastDrain   int64 // unix ns when its connection last took messages (stuck detection)

	mu       sync.Mutex
	online   atomic.Bool  // a client is connected (read by Busy without the lock)
	queued   atomic.Int32 // len(queue)-head, mirrored for Busy
	head     int32        // index of the oldest queued entry
	expiry   uint32       // session expiry interval, seconds (math.MaxUint32: never)
	timerGen uint32       // bumps to cancel pending expiry / will timers (compared for equality only)
	nextID   uint16
	version  byte // protocol level of the last connection
	woken    bool // owner has been asked to drain and has not yet
	stored   bool // the store holds a record of this session
	ended    bool
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

// mayRead checks the session's read access to m's topic (ACLs are checked on
// delivery, as mosquitto does). Any goroutine.
func (s *Session) mayRead(m *Message) bool {
	r := s.reader.Load()
	if r == nil || r.pol.Auth == nil {
		return true
	}
	return r.pol.Auth.Allow(&r.info, string(m.Topic), AccessRead)
}

// entry is one message waiting in a session's queue.
type entry struct {
	m      *Message
	qos    byte
	retain bool     // the RETAIN flag to send
	ids    []uint32 // subscription identifiers (immutable, owned by the trie)
	seq    uint64   // the store's key for it (0: not stored)
}

// inflight is an outgoing QoS 1/2 message awaiting acknowledgement.
type inflight struct {
	id     uint16
	e      entry
	pubrel bool // PUBREC received: PUBREL sent, awaiting PUBCOMP
}

func newSession(b *Broker, id string) *Session {
	return &Session{b: b, id: id}
}

// ID is the client identifier.
func (s *Session) ID() string { return s.id }

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
// can acknowledge (and delete) it.
func (s *Session) deliver(m *Message, qos byte, retain bool, ids []uint32, pb *store.Batch, force bool, pub *Client, now int64) (queued, slow bool, wakeAfterSubmit *Client) {
	opts := &s.b.opts
	s.mu.Lock()
	if s.ended || (s.owner == nil && qos == 0 && !opts.QueueQoS0) {
		s.mu.Unlock()
		return false, false, nil
	}
	n := len(s.queue) - int(s.head)
	if !force && ((opts.MaxQueuedMessages > 0 && n >= opts.MaxQueuedMessages) ||
		(opts.MaxQueuedBytes > 0 && s.queuedBytes+len(m.Payload) > opts.MaxQueuedBytes)) {
		moving := s.movingLocked(now)
		if qos == 0 || !moving {
			if moving {
				s.addWaiterLocked(pub)
			}
			s.mu.Unlock()
			s.b.Stats.PublishDropped.Add(1)
			return false, moving, nil
		}
		slow = true
	}
	m.retain()
	e := entry{m: m, qos: qos, retain: retain, ids: ids}
	if pb != nil && qos > 0 && s.expiry > 0 { // a persistent session's QoS 1/2 survives a restart
		e.seq = s.b.persist.nextSeq()
		s.storeQueuedLocked(pb, &e, 0, false)
	}
	s.queue = append(s.queue, e)
	s.queuedBytes += len(m.Payload)
	s.queued.Store(int32(n + 1))
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
		return true, slow, wake
	}
	if wake != nil {
		wake.t.Wake()
	}
	return true, slow, nil
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
	for i := range s.inflight {
		if s.inflight[i].id == id {
			return i
		}
	}
	return -1
}

// removeInflight ends the i-th inflight flow (and its stored copy).
func (s *Session) removeInflight(i int, pb *store.Batch) {
	s.unstoreLocked(pb, &s.inflight[i].e, s.inflight[i].e.qos == 2) // sent QoS 2 was stored again with its id
	s.inflight[i].e.m.Release()
	copy(s.inflight[i:], s.inflight[i+1:])
	s.inflight[len(s.inflight)-1] = inflight{}
	s.inflight = s.inflight[:len(s.inflight)-1]
}

func (s *Session) hasAwaitingRel(id uint16) bool {
	for _, x := range s.awaitingRel {
		if x == id {
			return true
		}
	}
	return false
}

func (s *Session) removeAwaitingRel(id uint16) bool {
	for i, x := range s.awaitingRel {
		if x == id {
			s.awaitingRel[i] = s.awaitingRel[len(s.awaitingRel)-1]
			s.awaitingRel = s.awaitingRel[:len(s.awaitingRel)-1]
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
	for i := range s.inflight {
		s.inflight[i].e.m.Release()
	}
	s.inflight, s.queue, s.head, s.queuedBytes = nil, nil, 0, 0
	s.awaitingRel = nil
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
