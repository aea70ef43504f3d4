package session

import "time"

// After a takeover across a cluster's nodes, a message may reach the
// session by two ways for a moment: forwarded by a node that still routed
// it to the old node (which passes it on) and to this one, or published
// here and passed back by the old node. Every copy carries the message's
// forward id (Message.ForwardID); for a while after the takeover, the
// session takes each id once.

// recentMax is how many ids one generation keeps: two generations, so the
// last recentMax to 2*recentMax ids are remembered. A copy older than that
// may come twice, never be lost.
const recentMax = 4096

// recentIDs are the forward ids a session took lately, until until.
type recentIDs struct {
	until     int64 // unix ns
	cur, prev map[uint64]struct{}
}

// DedupFor makes id's session take each forwarded message once for d from
// now, whichever way its copies come. It reports whether the session is
// held here. Any goroutine.
func (b *Broker) DedupFor(id string, d time.Duration) bool {
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
	fl := s.newFlows()
	if fl.recent == nil {
		fl.recent = &recentIDs{cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}}
	}
	fl.recent.until = time.Now().Add(d).UnixNano()
	return true
}

// repeatedLocked reports whether the session took m already, noting it
// otherwise; past the window the ids are let go. Assumes s.mu and
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
	if _, ok := r.prev[id]; ok {
		return true
	}
	if len(r.cur) >= recentMax {
		clear(r.prev)
		r.cur, r.prev = r.prev, r.cur
	}
	r.cur[id] = struct{}{}
	return false
}
