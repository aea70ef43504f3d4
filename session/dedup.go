package session

import "time"

// After a takeover across a cluster's nodes, a message may reach the
// session by two ways for a moment: forwarded by a node that still routed
// it to the old node (which passes it on) and to this one, or published
// here and passed back by the old node. Every copy carries the message's
// forward id (Message.ForwardID), and so do the messages handed over with
// the session; for a while after the takeover, the session takes each id
// once (SetDedupWindow).

// recentMax is how many ids one generation keeps: two generations, so the
// last recentMax to 2*recentMax ids are remembered. A copy older than that
// may come twice, never be lost.
const recentMax = 4096

// recentIDs are the forward ids a session took lately, until until.
type recentIDs struct {
	until     int64 // unix ns
	cur, prev map[uint64]struct{}
}

// SetDedupWindow makes every session installed from another node's
// handover (Install, not adopted) take each forwarded message once for d
// after the install, whichever way its copies come, those handed over with
// it included. 0: never. Any goroutine.
func (b *Broker) SetDedupWindow(d time.Duration) { b.dedupWindow.Store(int64(d)) }

// RecordIDs makes id's session, here, note the forward ids of what it
// takes for d from now: handed over meanwhile, it carries them to the new
// node, which then takes another copy of one of them (passed on by this
// node's relay) as a repeat. It reports whether the session is held here.
// Any goroutine.
func (b *Broker) RecordIDs(id string, d time.Duration) bool {
	b.registry.mu.Lock()
	s := b.registry.m.get(id)
	b.registry.mu.Unlock()
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	until := time.Now().Add(d).UnixNano()
	if s.fl != nil && s.fl.recent != nil {
		s.fl.recent.until = max(s.fl.recent.until, until) // its timer finds it later
		return true
	}
	s.openRecentLocked(until, nil)
	return true
}

// endRecentAt makes the broker's timers let s's window r go at its end,
// rather than s's next delivery (which an idle session may never have).
// Assumes s.mu.
func (b *Broker) endRecentAt(s *Session, r *recentIDs) {
	b.timers.add(timer{at: r.until, kind: timerDedup, s: s, ids: r})
}

// endRecent lets s's window r go once it has passed (RecordIDs may have
// made it longer meanwhile: then at its new end). From Broker.Tick.
func (b *Broker) endRecent(s *Session, r *recentIDs, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fl == nil || s.fl.recent != r {
		return // gone already, or another window since (with its own timer)
	}
	if now <= r.until && !s.ended {
		b.endRecentAt(s, r)
		return
	}
	s.fl.recent = nil
}

// recentLocked lists the ids s remembers. Assumes s.mu.
func (s *Session) recentLocked() []uint64 {
	if s.fl == nil || s.fl.recent == nil {
		return nil
	}
	r := s.fl.recent
	ids := make([]uint64, 0, len(r.cur)+len(r.prev))
	for id := range r.cur {
		ids = append(ids, id)
	}
	for id := range r.prev {
		ids = append(ids, id)
	}
	return ids
}

// openRecentLocked opens s's window until until, knowing ids already (the
// last 2*recentMax of them: a copy can come only of what was sent lately).
// Assumes s.mu.
func (s *Session) openRecentLocked(until int64, ids []uint64) {
	ids = ids[max(0, len(ids)-2*recentMax):]
	r := &recentIDs{until: until, cur: make(map[uint64]struct{}, len(ids)), prev: map[uint64]struct{}{}}
	for _, id := range ids {
		if id != 0 {
			r.cur[id] = struct{}{}
		}
	}
	s.newFlows().recent = r
	if s.b != nil { // nil: a bare Session of a unit test
		s.b.endRecentAt(s, r)
	}
}

// repeatedLocked reports whether the session took m already; past the
// window the ids are let go (if the timer has not yet). Assumes s.mu and
// s.fl.recent.
func (s *Session) repeatedLocked(m *Message, now int64) bool {
	r := s.fl.recent
	if now > r.until {
		s.fl.recent = nil
		return false
	}
	id := m.fwdID
	if id == 0 {
		return false
	}
	if _, ok := r.cur[id]; ok {
		return true
	}
	_, ok := r.prev[id]
	return ok
}

// tookLocked notes that the session took m (queued it), so that another
// copy is a repeat; one dropped (a full queue) is not noted, and its other
// copy may still be taken. Assumes s.mu.
func (s *Session) tookLocked(m *Message) {
	if s.fl == nil || s.fl.recent == nil || m.fwdID == 0 {
		return
	}
	r, id := s.fl.recent, m.fwdID
	if len(r.cur) >= recentMax {
		clear(r.prev)
		r.cur, r.prev = r.prev, r.cur
	}
	r.cur[id] = struct{}{}
}
