package session

import (
	"encoding/binary"
	"errors"
	"sort"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
	"github.com/midge-mqtt/midge/trie"
)

// SessionCluster makes sessions cluster-wide: one session per client id
// across the nodes. A CONNECT first claims its client id with Claim (the
// connection is parked meanwhile, as for an auth answer); the cluster takes
// the session over from the node that held it (HandOver there, Install
// here) before it answers.
type SessionCluster interface {
	// Claim makes this node the owner of id's session cluster-wide. It
	// returns at once and calls done, from any goroutine, with
	// codec.Success once the CONNECT may go on (a session handed over is
	// installed by then), or with the reason code to refuse it (v5
	// ServerUnavailable when the cluster cannot decide in time).
	// expiry is the session expiry the client asked for.
	Claim(id string, cleanStart bool, expiry uint32, done func(code byte))
	// Opened tells the cluster that the CONNECT that claimed id has opened
	// its session here (open) or has not (failed, or parked again): a
	// handover asked for meanwhile may go.
	Opened(id string, open bool)

	// The following keep what must survive this node's death replicated.
	// They are called under the session's lock, in the order the changes
	// happen, and must only queue the write (state is theirs to keep).

	// Snapshot replaces the replicated state of id's session: its record
	// (subscriptions, expiry, the will of its connection) and, when it is
	// offline, its queue, in Install's form.
	Snapshot(id string, state []byte)
	// Queued adds one message (a store.Queued record) to the replicated
	// queue of an offline persistent session. It returns the write's
	// number when the message's publisher is to be acknowledged only once
	// the write is stored on a quorum (Broker.Replicated reports the
	// numbers stored, in order), math.MaxUint64 for a write it will not
	// make (that acknowledgement is never sent), or 0: no wait.
	Queued(id string, rec []byte) uint64
	// Ended says that id's session ended on this node: its replicated
	// state goes.
	Ended(id string)
}

// SetSessionCluster makes sessions cluster-wide. Call it before the
// listeners open.
func (b *Broker) SetSessionCluster(sc SessionCluster) { b.sessions = sc }

// claimKey names the cluster's answer among a parked CONNECT's answers.
const claimKey = "\x00cluster-claim"

// claim asks the cluster for the client id before the session opens. ok
// is false while the answer is awaited (the CONNECT is parked). Loop-only.
func (c *Client) claim(id string, cleanStart bool) (code byte, ok bool) {
	k := c.Ticket()
	if v, ok := k.Lookup(claimKey); ok {
		return byte(v), true
	}
	if !k.Begin(claimKey) {
		return 0, false
	}
	c.b.sessions.Claim(id, cleanStart, c.expiry, func(code byte) { k.Answer(uint32(code)) })
	return 0, false
}

var errHandover = errors.New("session: malformed handover")

// HandOver gives up id's session to another node: its connected client, if
// any, is disconnected (v5 DISCONNECT 0x8E, session taken over), and the
// session ends here. With resume, and when the session outlives its
// connection (expiry > 0), its state (subscriptions, queued and inflight
// messages, inbound QoS 2 ids) is returned for Install on the new node,
// and the old client's will is not sent (the session goes on); without
// resume, the will is handled as for a local takeover by a clean start.
// found reports whether this node held a session for id. Any goroutine.
func (b *Broker) HandOver(id string, resume bool) (state []byte, found bool) {
	found = b.endHere(id, func(s *Session) (withoutWill bool) {
		keep := resume && s.expiry != 0 && !s.ended
		if keep {
			state = b.appendStateLocked(nil, s, nil, 0, 0, true)
		}
		return keep
	})
	return state, found
}

// endHere ends id's session on this node for another node's sake: its
// connected client, if any, is disconnected (v5 DISCONNECT 0x8E, session
// taken over), without its will if before says so (before runs first,
// under the registry's and the session's locks), and a delayed will is
// cancelled here [MQTT-3.1.3-9]. It reports whether a session was held.
func (b *Broker) endHere(id string, before func(s *Session) (withoutWill bool)) bool {
	pb := b.newBatch()
	defer b.submit(pb)
	r := &b.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m.get(id)
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	withoutWill := before(s)
	if o := s.owner; o != nil {
		if withoutWill {
			o.kickWithoutWill(codec.SessionTakenOver)
		} else {
			o.kick(codec.SessionTakenOver)
		}
		s.owner = nil
		s.online.Store(false)
	}
	s.replaced = true
	s.timerGen++
	b.endSessionLocked(s, pb)
	return true
}

// Drop ends id's session on this node because the cluster gave it to
// another node meanwhile (a partition healed: the majority's registry
// wins). Its connected client, if any, is disconnected (v5 DISCONNECT
// 0x8E, session taken over) without its will: the node that took the
// session has dealt with that will. It reports whether a session was held.
// Any goroutine.
func (b *Broker) Drop(id string) bool {
	return b.endHere(id, func(*Session) bool { return true })
}

// SessionIDs lists the client ids of the sessions held here, connected or
// not. Any goroutine.
func (b *Broker) SessionIDs() []string {
	r := &b.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, r.m.len())
	r.m.each(func(s *Session) { ids = append(ids, s.ID()) })
	return ids
}

// appendStateLocked encodes s for Install: the session record (with the
// will w, if not nil, and the time it went offline, 0 while connected),
// then, withQueue, each inflight and queued message (in the order they are
// to be sent) and the inbound QoS 2 ids. Assumes s.mu.
func (b *Broker) appendStateLocked(dst []byte, s *Session, w *store.Message, willDelay uint32, offSince int64, withQueue bool) []byte {
	rec := store.Session{ClientID: s.ID(), Version: s.version, Expiry: s.expiry, DisconnectedAt: offSince,
		Will: w, WillDelay: willDelay}
	if r := s.reader.Load(); r != nil {
		rec.Username, rec.HasUsername = r.info.Username, r.info.HasUsername
	}
	for f, o := range b.subs.Subscriptions(s) {
		rec.Subscriptions = append(rec.Subscriptions, store.Subscription{Filter: f, QoS: o.QoS,
			NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling, ID: o.ID})
	}
	sort.Slice(rec.Subscriptions, func(i, j int) bool { return rec.Subscriptions[i].Filter < rec.Subscriptions[j].Filter })
	dst = appendChunk(dst, store.AppendSession(nil, &rec))
	if !withQueue {
		return binary.AppendUvarint(binary.AppendUvarint(dst, 0), 0)
	}
	fl := s.flows()
	n := len(fl.inflight) + len(s.queue) - int(s.head)
	dst = binary.AppendUvarint(dst, uint64(n))
	var scratch []byte
	put := func(e *entry, id uint16, pubrel bool) {
		q := store.Queued{Msg: toStore(e.m), QoS: e.qos, Retain: e.retain, SubIDs: e.ids, PacketID: id, PubrelSent: pubrel}
		scratch = store.AppendQueued(scratch[:0], &q)
		dst = appendChunk(dst, scratch)
	}
	for i := range fl.inflight {
		f := &fl.inflight[i]
		put(&f.e, f.id, f.pubrel)
	}
	for i := int(s.head); i < len(s.queue); i++ {
		put(&s.queue[i], 0, false)
	}
	dst = binary.AppendUvarint(dst, uint64(len(fl.awaitingRel)))
	for _, id := range fl.awaitingRel {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	// The messages' forward ids, in the same order (dedup.go): the new node
	// knows them when another copy comes.
	for i := range fl.inflight {
		dst = binary.AppendUvarint(dst, fl.inflight[i].e.m.fwdID)
	}
	for i := int(s.head); i < len(s.queue); i++ {
		dst = binary.AppendUvarint(dst, s.queue[i].m.fwdID)
	}
	// Then those of what it took lately (RecordIDs), delivered already.
	recent := s.recentLocked()
	dst = binary.AppendUvarint(dst, uint64(len(recent)))
	for _, id := range recent {
		dst = binary.AppendUvarint(dst, id)
	}
	return dst
}

func appendChunk(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func readChunk(b []byte) (chunk, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, errHandover
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// Install makes the session another node handed over (HandOver's state)
// this node's, offline, ready for the CONNECT that claimed it to resume
// (session present 1). A session this node held for the id ends first.
// extra are more queued messages (store.Queued records) after those of
// state. adopted: the session comes from a dead node's replicated state
// (a Snapshot): its will is scheduled as after a restart (at its delay
// after the disconnect, or after now if the client was connected), and its
// expiry runs from its disconnect. Any goroutine.
func (b *Broker) Install(id string, state []byte, extra [][]byte, adopted bool) error {
	chunk, rest, err := readChunk(state)
	if err != nil {
		return err
	}
	rec, err := store.DecodeSession(id, chunk)
	if err != nil {
		return err
	}
	count, k := binary.Uvarint(rest)
	if k <= 0 {
		return errHandover
	}
	rest = rest[k:]
	var queued []*store.Queued
	for range count {
		if chunk, rest, err = readChunk(rest); err != nil {
			return err
		}
		q, err := store.DecodeQueued(id, 0, chunk)
		if err != nil {
			return err
		}
		queued = append(queued, q)
	}
	for _, x := range extra {
		q, err := store.DecodeQueued(id, 0, x)
		if err != nil {
			return err
		}
		queued = append(queued, q)
	}
	nrel, k := binary.Uvarint(rest)
	if k <= 0 {
		return errHandover
	}
	rest = rest[k:]
	var rel []uint16
	for range nrel {
		v, k := binary.Uvarint(rest)
		if k <= 0 || v > 0xFFFF {
			return errHandover
		}
		rel, rest = append(rel, uint16(v)), rest[k:]
	}
	fids := make([]uint64, count) // absent (an older state): none
	for i := range fids {
		v, k := binary.Uvarint(rest)
		if k <= 0 {
			break
		}
		fids[i], rest = v, rest[k:]
	}
	known := fids
	if nr, k := binary.Uvarint(rest); k > 0 && nr <= uint64(len(rest)) {
		rest = rest[k:]
		known = append([]uint64(nil), fids...)
		for range nr {
			v, k := binary.Uvarint(rest)
			if k <= 0 {
				break
			}
			known, rest = append(known, v), rest[k:]
		}
	}

	now := time.Now().UnixNano()
	var publishNow *store.Message // after the locks
	defer func() {
		if publishNow != nil {
			b.PublishStored(publishNow)
		}
	}()
	pb := b.newBatch()
	defer b.submit(pb)
	r := &b.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.m.get(id); old != nil {
		old.mu.Lock()
		if o := old.owner; o != nil {
			o.kickWithoutWill(codec.SessionTakenOver)
			old.owner = nil
		}
		old.replaced = true
		old.timerGen++
		b.endSessionLocked(old, pb)
		old.mu.Unlock()
	}
	s := newSession(b, &reader{pol: &b.policy, info: ClientInfo{ClientID: id, Username: rec.Username, HasUsername: rec.HasUsername}})
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := b.dedupWindow.Load(); d > 0 && !adopted {
		s.openRecentLocked(now+d, known) // before any delivery can come (dedup.go)
	}
	s.expiry, s.version = rec.Expiry, rec.Version
	s.pers().subs = make(map[string]trie.Options, len(rec.Subscriptions))
	for _, sub := range rec.Subscriptions {
		o := trie.Options{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
			RetainHandling: sub.RetainHandling, ID: sub.ID}
		if _, err := b.subs.Subscribe(s, sub.Filter, o); err == nil {
			s.p.subs[sub.Filter] = o
		}
	}
	for i, q := range queued {
		e := entry{m: messageFromStore(&q.Msg), qos: q.QoS, retain: q.Retain}
		if i < len(fids) {
			e.m.fwdID = fids[i]
		}
		if len(q.SubIDs) > 0 {
			e.ids = append([]uint32(nil), q.SubIDs...)
		}
		if pb != nil {
			e.seq = b.persist.nextSeq()
		}
		if q.PacketID != 0 {
			fl := s.newFlows()
			fl.inflight = append(fl.inflight, inflight{id: q.PacketID, e: e, pubrel: q.PubrelSent})
			s.storeQueuedLocked(pb, &e, q.PacketID, q.PubrelSent)
			continue
		}
		s.queue = append(s.queue, e)
		s.queuedBytes += len(e.m.Payload)
		s.storeQueuedLocked(pb, &e, 0, false)
	}
	s.queued.Store(int32(len(s.queue)))
	if len(rel) > 0 {
		fl := s.newFlows()
		fl.awaitingRel = rel
		if pb != nil {
			for _, id := range rel {
				pb.PutAwaitingRel(s.ID(), id)
			}
		}
	}
	r.m.put(s)
	b.Stats.ClientsTotal.Add(1)
	off := now
	if adopted && rec.DisconnectedAt != 0 {
		off = rec.DisconnectedAt
	}
	s.p.offSince = off
	switch {
	case adopted && rec.Will != nil && rec.DisconnectedAt == 0 && rec.WillDelay == 0:
		// The crash ended its connection, and its will waits for nothing:
		// a resuming CONNECT must not cancel it.
		publishNow = rec.Will
	case adopted:
		b.restoreWill(s, rec, off, now) // the will rides in the session record
	}
	b.storeSessionLocked(s, pb, off)
	if s.expiry != neverExpires {
		b.timers.add(timer{at: off + int64(s.expiry)*1e9, kind: timerExpiry, s: s, gen: s.timerGen})
	}
	if b.sessions != nil {
		b.sessions.Snapshot(id, b.appendStateLocked(nil, s, s.p.willRec, s.p.willDelay, off, true))
	}
	return nil
}

// snapshotLocked passes s's replicated state to the cluster when it must
// survive this node: a persistent session, or a connection with a will
// (w). Offline (offSince != 0), its queue goes too. Assumes s.mu.
func (b *Broker) snapshotLocked(s *Session, w *will, offSince int64) {
	if b.sessions == nil || s.ended || (s.expiry == 0 && w == nil) || (s.p != nil && s.p.nodeLocal) {
		return
	}
	var wm *store.Message
	var delay uint32
	if w != nil {
		m := toStore(w.m)
		wm, delay = &m, w.delay
	}
	b.sessions.Snapshot(s.ID(), b.appendStateLocked(nil, s, wm, delay, offSince, offSince != 0))
}

// snapshotOnline is snapshotLocked for a connected client's session (after
// its CONNECT, after a subscription changed). Loop-only (reads c.will).
func (c *Client) snapshotOnline() {
	s := c.s
	if s == nil {
		return
	}
	s.mu.Lock()
	if c.extra != nil && c.extra.relay {
		s.pers().nodeLocal = true
	} else if s.owner == c {
		c.b.snapshotLocked(s, c.will, 0)
	}
	s.mu.Unlock()
}

// PublishStored publishes a message kept as a store record: the will of a
// clean session's client that was connected to a node that died. Any
// goroutine.
func (b *Broker) PublishStored(sm *store.Message) {
	b.publishWill(nil, &will{m: messageFromStore(sm)})
}

// SessionQueued returns how many messages the session of clientID holds
// (queued and inflight), and whether this node holds that session. Any
// goroutine.
func (b *Broker) SessionQueued(clientID string) (int, bool) {
	b.registry.mu.Lock()
	defer b.registry.mu.Unlock()
	s := b.registry.m.get(clientID)
	if s == nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) - int(s.head) + len(s.flows().inflight), true
}

// snapshotOffline passes the state of s, whose client c has just gone, to
// the cluster: its queue, and the will that waits for its delay. Assumes
// s.mu. Loop-only (reads c's will).
func (b *Broker) snapshotOffline(s *Session, c *Client) {
	var w *will
	if cw := c.will; cw != nil && !c.disconnected && c.kicked.Load()&kickNoWill == 0 && cw.delay > 0 {
		w = cw
	}
	off := time.Now().UnixNano()
	if s.p != nil && s.p.offSince != 0 {
		off = s.p.offSince
	}
	b.snapshotLocked(s, w, off)
}

// replicateQueuedLocked passes a message queued for an offline persistent
// session to the cluster, and returns the number of the replicated write
// that its publisher's acknowledgement waits for (0: none). Only with a
// store: without persistence, acknowledgements wait for nothing. Assumes
// s.mu.
func (b *Broker) replicateQueuedLocked(s *Session, e *entry) uint64 {
	if s.p != nil && s.p.nodeLocal {
		return 0
	}
	q := store.Queued{Msg: toStore(e.m), QoS: e.qos, Retain: e.retain, SubIDs: e.ids}
	n := b.sessions.Queued(s.ID(), store.AppendQueued(nil, &q))
	if n == 0 || b.persist.db == nil {
		return 0
	}
	return b.persist.numbered(n)
}

// snapshotOfflineLocked replaces the replicated state of offline s (its
// will published or cancelled). Assumes s.mu.
func (b *Broker) snapshotOfflineLocked(s *Session) {
	off := time.Now().UnixNano()
	if s.p != nil && s.p.offSince != 0 {
		off = s.p.offSince
	}
	b.snapshotLocked(s, nil, off)
}
