package session

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
	"github.com/midge-mqtt/midge/trie"
)

// persistence is the broker's link to its store (nil db: in memory only).
// What is stored: retained messages, and for persistent sessions (session
// expiry > 0, or v3 clean session 0) their record with subscriptions, their
// QoS 1/2 queue and inflight messages, and inbound QoS 2 ids awaiting PUBREL.
// QoS 0 and clean sessions never touch it.
//
// A QoS 1/2 PUBLISH whose effects were stored is acknowledged only once
// they are durable: the ack waits in the client's ack queue (in order) until
// the store reports the batch's sequence number durable, then the client is
// woken to send it.
type persistence struct {
	db *store.DB

	mu      sync.Mutex
	waiters []*Client // clients with acks waiting for durability (or a quorum)

	// In a cluster whose acks wait for a quorum (SessionCluster.Queued
	// numbers its writes): quorumStored is the number up to which the
	// cluster's replicated writes are all stored on a quorum, quorumQueued
	// the highest number handed out. Both stay 0 on a single node.
	// quorumVoid: acks held for numbers up to it are never sent
	// (VoidReplicated).
	quorumStored atomic.Uint64
	quorumQueued atomic.Uint64
	quorumVoid   atomic.Uint64

	// seq numbers queued records, broker-wide. A number is never used
	// twice, also across restarts (the store deletes a record written once
	// with a single delete, which is undefined for a key written twice):
	// it starts above every stored record, the stored high-water mark and
	// the clock in nanoseconds.
	seq atomic.Uint64

	countersMu sync.Mutex
	final      bool // SaveCounters ran at the stop: the periodic saver stays quiet
}

// seqMarkCounter is the stored counter that holds seq's high-water mark.
const seqMarkCounter = "store/queue-seq"

// nextSeq numbers a record of a queued message. Any goroutine.
func (p *persistence) nextSeq() uint64 { return p.seq.Add(1) }

// AttachStore loads the state db holds (retained messages, persistent
// sessions, their queues) into the broker and persists changes from now on.
// Call it before serving clients. Records that could not be read are in the
// report; they are skipped, never fatal.
func (b *Broker) AttachStore(db *store.DB) (store.Report, error) {
	now := time.Now().UnixNano()
	maxSeq := uint64(now)   // queued records are numbered above it (persistence.seq)
	fix := store.NewBatch() // removes what is found expired or orphaned
	rep, err := db.Load(store.Visitor{
		Retained: func(sm *store.Message) {
			m := messageFromStore(sm)
			if m.expired(now) {
				fix.DeleteRetained(sm.Topic)
				m.Release()
				return
			}
			m.from = b.sourceReader(sm.Source)
			b.retained.Set(string(m.Topic), m)
			b.Stats.RetainedMessages.Add(1)
		},
		Session: func(ss *store.Session) {
			b.restoreSession(ss, now, fix)
		},
		Queued: func(q *store.Queued) {
			s := b.registry.m.get(q.ClientID)
			if s == nil {
				fix.DeleteQueued(q.ClientID, q.Seq)
				return
			}
			e := entry{m: messageFromStore(&q.Msg), qos: q.QoS, retain: q.Retain, seq: q.Seq}
			if len(q.SubIDs) > 0 {
				e.ids = append([]uint32(nil), q.SubIDs...)
			}
			maxSeq = max(maxSeq, q.Seq)
			if q.PacketID != 0 {
				fl := s.newFlows()
				fl.inflight = append(fl.inflight, inflight{id: q.PacketID, e: e, pubrel: q.PubrelSent})
				return
			}
			s.queue = append(s.queue, e)
			s.queuedBytes += len(e.m.Payload)
			s.queued.Store(int32(len(s.queue)))
		},
		AwaitingRel: func(clientID string, id uint16) {
			if s := b.registry.m.get(clientID); s != nil {
				fl := s.newFlows()
				fl.awaitingRel = append(fl.awaitingRel, id)
			} else {
				fix.DeleteAwaitingRel(clientID, id)
			}
		},
		Counter: func(name string, v uint64) {
			if name == seqMarkCounter {
				maxSeq = max(maxSeq, v)
				return
			}
			b.restoreCounter(name, v)
		},
	})
	if err != nil {
		return rep, err
	}
	b.registry.m.each(func(s *Session) { // inflight resent in the order first sent
		sort.SliceStable(s.flows().inflight, func(i, j int) bool { return s.flows().inflight[i].e.seq < s.flows().inflight[j].e.seq })
	})
	if fix.Len() > 0 {
		db.Submit(fix)
	}
	b.persist.seq.Store(maxSeq)
	b.persist.db = db
	go b.saveCountersEvery(counterSaveInterval, db)
	return rep, nil
}

// counterSaveInterval is how often the counters' totals are stored; a crash
// loses at most this much of their increments (a clean stop none).
const counterSaveInterval = 5 * time.Second

// storedCounters are the Stats that $SYS reports as totals since the first
// start: they continue across restarts. (Clients connected, sessions and
// retained messages are counted again from what is loaded.)
var storedCounters = []struct {
	name string
	f    func(*Stats) *atomic.Int64
}{
	{"clients/maximum", func(s *Stats) *atomic.Int64 { return &s.ClientsMaximum }},
	{"clients/expired", func(s *Stats) *atomic.Int64 { return &s.ClientsExpired }},
	{"messages/received", func(s *Stats) *atomic.Int64 { return &s.MessagesReceived }},
	{"messages/sent", func(s *Stats) *atomic.Int64 { return &s.MessagesSent }},
	{"publish/messages/received", func(s *Stats) *atomic.Int64 { return &s.PublishReceived }},
	{"publish/messages/sent", func(s *Stats) *atomic.Int64 { return &s.PublishSent }},
	{"publish/messages/dropped", func(s *Stats) *atomic.Int64 { return &s.PublishDropped }},
	{"publish/bytes/received", func(s *Stats) *atomic.Int64 { return &s.PublishBytesRecv }},
	{"publish/bytes/sent", func(s *Stats) *atomic.Int64 { return &s.PublishBytesSent }},
	{"bytes/received", func(s *Stats) *atomic.Int64 { return &s.BytesReceived }},
	{"bytes/sent", func(s *Stats) *atomic.Int64 { return &s.BytesSent }},
	{"connections/opened", func(s *Stats) *atomic.Int64 { return &s.ConnectionsOpened }},
	{"connects", func(s *Stats) *atomic.Int64 { return &s.Connects }},
}

// restoreCounter adds a stored total to its counter (the maximum is kept
// as the larger of the two). Unknown names, from a later version, are kept
// in the store untouched.
func (b *Broker) restoreCounter(name string, v uint64) {
	for _, c := range storedCounters {
		if c.name != name {
			continue
		}
		ctr := c.f(&b.Stats)
		if name == "clients/maximum" {
			if int64(v) > ctr.Load() {
				ctr.Store(int64(v))
			}
			return
		}
		ctr.Add(int64(v))
		return
	}
}

// SaveCounters stores the counters' totals for the last time. Call it once
// the listeners have stopped and before the store is closed, so that a
// restart goes on from them. Any goroutine.
func (b *Broker) SaveCounters() { b.saveCounters(true) }

// saveCounters stores the counters' totals and the queue's sequence
// high-water mark; it runs every counterSaveInterval until the final save.
func (b *Broker) saveCounters(final bool) {
	p := &b.persist
	if p.db == nil {
		return
	}
	p.countersMu.Lock()
	defer p.countersMu.Unlock()
	if p.final {
		return
	}
	p.final = final
	pb := store.NewBatch()
	for _, c := range storedCounters {
		pb.PutCounter(c.name, uint64(c.f(&b.Stats).Load()))
	}
	pb.PutCounter(seqMarkCounter, p.seq.Load())
	p.db.Submit(pb)
}

// saveCountersEvery saves the counters every d until db closes.
func (b *Broker) saveCountersEvery(d time.Duration, db *store.DB) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.saveCounters(false)
		case <-db.Closing():
			return
		}
	}
}

// restoreSession recreates a stored session, offline, with its
// subscriptions, and schedules its expiry from when it disconnected.
func (b *Broker) restoreSession(ss *store.Session, now int64, fix *store.Batch) {
	disconnected := ss.DisconnectedAt
	if disconnected == 0 { // the broker stopped while it was connected
		disconnected = now
	}
	if ss.Expiry == 0 || (ss.Expiry != neverExpires && disconnected+int64(ss.Expiry)*1e9 <= now) {
		fix.DeleteSession(ss.ClientID)
		return
	}
	// Messages queued while it is away are checked against its last
	// identity, under the broker's policy (the listener it used is not known).
	s := newSession(b, &reader{pol: &b.policy, info: ClientInfo{ClientID: ss.ClientID, Username: ss.Username, HasUsername: ss.HasUsername}})
	s.expiry, s.version, s.stored, s.nextID = ss.Expiry, ss.Version, true, ss.LastID
	s.pers().subs = make(map[string]trie.Options, len(ss.Subscriptions))
	for _, sub := range ss.Subscriptions {
		o := trie.Options{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
			RetainHandling: sub.RetainHandling, ID: sub.ID}
		if _, err := b.subs.Subscribe(s, sub.Filter, o); err != nil {
			continue
		}
		s.p.subs[sub.Filter] = o
	}
	b.registry.m.put(s)
	b.Stats.ClientsTotal.Add(1)
	s.p.offSince = disconnected
	b.restoreWill(s, ss, disconnected, now)
	if ss.Expiry != neverExpires {
		b.timers.add(timer{at: disconnected + int64(ss.Expiry)*1e9, kind: timerExpiry, s: s, gen: s.timerGen})
	}
}

// rememberWill keeps a copy of c's will for the store when c's session is
// persistent, so that a restart (or a crash) while the will is pending
// still publishes it [MQTT-3.1.2-8]. Assumes s.mu is held.
func (b *Broker) rememberWillLocked(s *Session, c *Client) {
	s.dropWillRecLocked()
	if b.persist.db == nil || c.will == nil || c.expiry == 0 {
		return
	}
	w := c.will
	m := toStore(w.m)
	m.Topic = append([]byte(nil), m.Topic...)
	m.Payload = append([]byte(nil), m.Payload...)
	m.Props = codec.Properties{Present: m.Props.Present, PayloadFormat: m.Props.PayloadFormat,
		ContentType: append([]byte(nil), m.Props.ContentType...), ResponseTopic: append([]byte(nil), m.Props.ResponseTopic...),
		CorrelationData: append([]byte(nil), m.Props.CorrelationData...)}
	for _, u := range w.m.Props.User {
		m.Props.User = append(m.Props.User, codec.UserProperty{Key: append([]byte(nil), u.Key...), Value: append([]byte(nil), u.Value...)})
	}
	s.pers().willRec, s.p.willDelay = &m, w.delay
}

// restoreWill schedules the stored will of a restored session: at its delay
// after the disconnect, or after the restart when the client was connected
// when the broker stopped (its connection ended then), bounded by the
// session's expiry.
func (b *Broker) restoreWill(s *Session, ss *store.Session, disconnected, now int64) {
	if ss.Will == nil {
		return
	}
	delay := ss.WillDelay
	if ss.Expiry < delay {
		delay = ss.Expiry
	}
	at := disconnected + int64(delay)*1e9
	if at < now {
		at = now
	}
	s.pers().willRec, s.p.willDelay = ss.Will, ss.WillDelay
	w := &will{m: messageFromStore(ss.Will), delay: ss.WillDelay}
	b.timers.add(timer{at: at, kind: timerWill, s: s, gen: s.timerGen, will: w})
}

// forgetWillLocked drops the stored will once it was published or cancelled.
// Assumes s.mu is held.
func (b *Broker) forgetWillLocked(s *Session, pb *store.Batch) {
	if b.sessions != nil && !s.ended && s.owner == nil {
		defer b.snapshotOfflineLocked(s) // the cluster's copy loses the will too (handover.go)
	}
	if s.p == nil || s.p.willRec == nil {
		return
	}
	s.dropWillRecLocked()
	if !s.ended && s.owner == nil {
		b.storeSessionLocked(s, pb, s.p.offSince)
	}
}

// messageFromStore makes a pooled Message from a stored one.
func messageFromStore(sm *store.Message) *Message {
	var p codec.Packet
	p.Type, p.QoS, p.Retain, p.Payload, p.Props = codec.PUBLISH, sm.QoS, sm.Retain, sm.Payload, sm.Props
	p.Props.Present &^= 1 << codec.PropMessageExpiry
	m := newMessage(sm.Topic, &p, 0)
	m.ExpiresAt = sm.ExpiresAt
	return m
}

// toStore describes m for the store (the batch copies it).
func toStore(m *Message) store.Message {
	return store.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Props: m.Props, ExpiresAt: m.ExpiresAt}
}

// retainedToStore is toStore for a retained message: with
// check_retain_source, its publisher is kept too.
func retainedToStore(m *Message) store.Message {
	sm := toStore(m)
	if f := m.from; f != nil {
		sm.Source = &store.Source{ClientID: f.info.ClientID, Username: f.info.Username,
			HasUsername: f.info.HasUsername, Listener: f.pol.Listener}
	}
	return sm
}

// SetListenerPolicies gives the broker the listeners' policies, so that the
// publisher of a retained message loaded from the store is checked under
// its own listener's (check_retain_source with per_listener_settings). Call
// it before AttachStore.
func (b *Broker) SetListenerPolicies(pols []*Policy) {
	b.listenerPolicies = make(map[string]*Policy, len(pols))
	for _, p := range pols {
		if p.Listener != "" {
			b.listenerPolicies[p.Listener] = p
		}
	}
}

// sourceReader is the publisher of a retained message loaded from the
// store, under its listener's policy (the broker's when it is not found).
// Nil when nothing checks it.
func (b *Broker) sourceReader(src *store.Source) *reader {
	if src == nil || !b.opts.CheckRetainSource {
		return nil
	}
	pol := b.listenerPolicies[src.Listener]
	if pol == nil {
		pol = &b.policy
	}
	if pol.Auth == nil {
		return nil
	}
	return &reader{pol: pol, info: ClientInfo{ClientID: src.ClientID, Username: src.Username, HasUsername: src.HasUsername}}
}

// batch returns the loop's scratch batch when the broker persists, else nil.
func (b *Broker) batch(out *Output) *store.Batch {
	if b.persist.db == nil {
		return nil
	}
	if out.batch == nil {
		out.batch = store.NewBatch()
	}
	return out.batch
}

// newBatch is a batch of its own for work off the loops (wills, $SYS,
// expiry), or nil when the broker does not persist.
func (b *Broker) newBatch() *store.Batch {
	if b.persist.db == nil {
		return nil
	}
	return store.NewBatch()
}

// submit commits pb's changes (if any) and returns the sequence number to
// wait for before acknowledging them (0: nothing to wait for).
func (b *Broker) submit(pb *store.Batch) uint64 {
	if pb == nil || pb.Len() == 0 {
		return 0
	}
	seq := b.persist.db.Submit(pb)
	pb.Reset()
	return seq
}

// Durable is the store's OnDurable callback: clients whose acks were
// waiting are woken to send what is now durable, and the cluster hears of
// it (SetDurableHook). Any goroutine.
func (b *Broker) Durable(uint64) {
	b.wakeAckWaiters()
	if f := b.durableHook.Load(); f != nil {
		(*f)()
	}
}

// SetDurableHook has f called (from any goroutine; it must not block)
// each time more of the store's changes are durable: a cluster node that
// confirms what another node forwarded waits for that. Call it before the
// listeners open (the store may be committing already).
func (b *Broker) SetDurableHook(f func()) { b.durableHook.Store(&f) }

// StoreProgress reports the number of the last batch of changes handed to
// the store and the number up to which they are durable (0, 0: no store).
func (b *Broker) StoreProgress() (submitted, durable uint64) {
	if b.persist.db == nil {
		return 0, 0
	}
	return b.persist.db.Submitted(), b.persist.db.Durable()
}

// numbered notes n, a number that an ack may wait for (SessionCluster.Queued,
// Remote.Confirm), as handed out: a QoS 2 PUBLISH sent again waits for all
// of them (publish). It returns n.
func (p *persistence) numbered(n uint64) uint64 {
	if n != 0 && n != math.MaxUint64 {
		for old := p.quorumQueued.Load(); n > old && !p.quorumQueued.CompareAndSwap(old, n); old = p.quorumQueued.Load() {
		}
	}
	return n
}

// Replicated is the cluster's report that everything it numbered up to
// upTo (its replicated writes, SessionCluster.Queued, and the other nodes'
// confirmations of what was forwarded to them, Remote.Confirm) is stored
// on a quorum: clients whose acks waited for them are woken. A lower
// number than one reported before changes nothing. Any goroutine.
func (b *Broker) Replicated(upTo uint64) {
	p := &b.persist
	for old := p.quorumStored.Load(); ; old = p.quorumStored.Load() {
		if upTo <= old {
			return
		}
		if p.quorumStored.CompareAndSwap(old, upTo) {
			break
		}
	}
	b.wakeAckWaiters()
}

// VoidReplicated is the cluster's report that its writes numbered up to
// upTo may not count (a partition gave their sessions to another node
// meanwhile): acks still held for them are never sent, their publishers
// are disconnected (v5 0x89, server busy) without their wills, and send
// those messages again when they connect again [MQTT-4.4.0-1]. Any
// goroutine.
func (b *Broker) VoidReplicated(upTo uint64) {
	p := &b.persist
	for old := p.quorumVoid.Load(); upTo > old && !p.quorumVoid.CompareAndSwap(old, upTo); old = p.quorumVoid.Load() {
	}
	b.wakeAckWaiters()
}

// wakeAckWaiters wakes the clients whose held acks may go now. Any goroutine.
func (b *Broker) wakeAckWaiters() {
	p := &b.persist
	p.mu.Lock()
	waiters := p.waiters
	p.waiters = nil
	for _, c := range waiters {
		c.durWait = false
	}
	p.mu.Unlock()
	for _, c := range waiters {
		c.t.Wake()
	}
}

// pendingAck is an acknowledgement held until its effects are durable:
// in the store (seq) and, in a cluster whose acks wait for a quorum, in
// the cluster's replicated state (quorum).
type pendingAck struct {
	t      codec.PacketType
	id     uint16
	reason byte
	seq    uint64
	quorum uint64
}

// ack sends an acknowledgement, or queues it behind earlier ones while its
// changes (seq) are not yet durable: acks leave in the order the PUBLISHes
// came [MQTT-4.6.0-2/3]. Loop-only.
func (c *Client) ack(out *Output, t codec.PacketType, id uint16, reason byte, why string, seq uint64) {
	c.ackAfter(out, t, id, reason, why, seq, 0)
}

// ackAfter is ack that also waits until the cluster has stored its
// replicated writes up to quorum (0: none) on a quorum. Loop-only.
func (c *Client) ackAfter(out *Output, t codec.PacketType, id uint16, reason byte, why string, seq, quorum uint64) {
	if seq == 0 && quorum == 0 && (c.extra == nil || len(c.extra.acks) == 0) {
		c.sendAckWhy(out, t, id, reason, why) // a held ack goes without its reason string
		return
	}
	x := c.more()
	x.acks = append(x.acks, pendingAck{t: t, id: id, reason: reason, seq: seq, quorum: quorum})
	c.flushAcks(out)
}

// heldPubacks counts the PUBACKs waiting for the store. Loop-only.
func (c *Client) heldPubacks() int {
	if c.extra == nil {
		return 0
	}
	n := 0
	for i := range c.extra.acks {
		if c.extra.acks[i].t == codec.PUBACK {
			n++
		}
	}
	return n
}

// flushAcks sends the held acks that are durable now, and asks to be woken
// when more become durable. Loop-only.
func (c *Client) flushAcks(out *Output) {
	if c.extra == nil || len(c.extra.acks) == 0 || c.b.persist.db == nil {
		return
	}
	acks := c.extra.acks
	durable := c.b.persist.db.Durable()
	stored := c.b.persist.quorumStored.Load()
	n := 0
	for n < len(acks) && acks[n].seq <= durable && acks[n].quorum <= stored {
		a := &acks[n]
		if a.quorum != 0 && a.quorum <= c.b.persist.quorumVoid.Load() {
			c.kickWithoutWill(codec.ServerBusy) // this and what follows never acknowledged
			break
		}
		c.sendAck(out, a.t, a.id, a.reason)
		n++
	}
	acks = acks[:copy(acks, acks[n:])]
	c.extra.acks = acks
	if len(acks) > 0 {
		c.waitAck(acks[0].seq, acks[0].quorum)
	}
}

// waitDurable asks for c to be woken once the store's batch seq is durable.
// Any goroutine that may use c's transport.
func (c *Client) waitDurable(seq uint64) { c.waitAck(seq, 0) }

// waitAck asks for c to be woken once the store's batch seq is durable and
// the cluster's writes up to quorum are stored on a quorum. Any goroutine
// that may use c's transport.
func (c *Client) waitAck(seq, quorum uint64) {
	p := &c.b.persist
	p.mu.Lock()
	if !c.durWait { // once: a client woken twice takes two turns
		c.durWait = true
		p.waiters = append(p.waiters, c)
	}
	p.mu.Unlock()
	// A commit (or a quorum's answer) may have come between the check and
	// registering.
	if p.db.Durable() >= seq && p.quorumStored.Load() >= quorum {
		c.t.Wake()
	}
}

// remember records a subscription (o) or its removal (nil) for the store,
// when the broker persists.
func (s *Session) remember(filter string, o *trie.Options) {
	if s.b.persist.db == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o == nil {
		if s.p != nil {
			delete(s.p.subs, filter)
		}
		return
	}
	p := s.pers()
	if p.subs == nil {
		p.subs = make(map[string]trie.Options)
	}
	p.subs[filter] = *o
}

// storeSessionLocked writes s's record (subscriptions, expiry, version) if
// it is or was persistent. Assumes s.mu is held.
func (b *Broker) storeSessionLocked(s *Session, pb *store.Batch, disconnectedAt int64) {
	if pb == nil || (!s.stored && s.expiry == 0) {
		return
	}
	s.stored = true
	p := s.pers()
	rec := store.Session{ClientID: s.ID(), Version: s.version, Expiry: s.expiry, DisconnectedAt: disconnectedAt,
		Will: p.willRec, WillDelay: p.willDelay, LastID: s.nextID}
	if r := s.reader.Load(); r != nil {
		rec.Username, rec.HasUsername = r.info.Username, r.info.HasUsername
	}
	for f, o := range p.subs {
		rec.Subscriptions = append(rec.Subscriptions, store.Subscription{Filter: f, QoS: o.QoS,
			NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling, ID: o.ID})
	}
	sort.Slice(rec.Subscriptions, func(i, j int) bool { return rec.Subscriptions[i].Filter < rec.Subscriptions[j].Filter })
	pb.PutSession(&rec)
}

// storeQueuedLocked writes an entry of a stored session. Assumes s.mu is held.
func (s *Session) storeQueuedLocked(pb *store.Batch, e *entry, id uint16, pubrel bool) {
	if pb == nil || e.seq == 0 {
		return
	}
	pb.PutQueued(&store.Queued{ClientID: s.ID(), Seq: e.seq, Msg: toStore(e.m), QoS: e.qos, Retain: e.retain,
		SubIDs: e.ids, PacketID: id, PubrelSent: pubrel})
}

// unstoreLocked deletes e's stored copy, if it has one. A copy written once
// (QoS 1, or QoS 2 before it was sent: sent QoS 2 copies are rewritten with
// their packet id and PUBREL state) goes with a single delete, which the
// store drops together with the put. Assumes s.mu is held.
func (s *Session) unstoreLocked(pb *store.Batch, e *entry, rewritten bool) {
	if pb == nil || e.seq == 0 {
		return
	}
	if rewritten {
		pb.DeleteQueued(s.ID(), e.seq)
		return
	}
	pb.DeleteQueuedOnce(s.ID(), e.seq)
}
