package session

import "testing"

// A session in its dedup window takes each forward id once, remembers the
// last recentMax to 2*recentMax ids, lets messages without an id through,
// and drops the window once it has passed.
func TestRepeatedForwardIDs(t *testing.T) {
	s := &Session{fl: &flows{recent: &recentIDs{until: 100, cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}}}}
	msg := func(id uint64) *Message { return &Message{fwdID: id} }
	if s.repeatedLocked(msg(7), 1) || !s.repeatedLocked(msg(7), 2) {
		t.Fatal("id 7: want new, then repeated")
	}
	if s.repeatedLocked(msg(0), 3) || s.repeatedLocked(msg(0), 4) {
		t.Fatal("a message without a forward id is never a repeat")
	}
	for id := uint64(1000); id < 1000+recentMax; id++ {
		if s.repeatedLocked(msg(id), 5) {
			t.Fatalf("id %d taken as a repeat", id)
		}
	}
	if !s.repeatedLocked(msg(7), 6) {
		t.Fatal("id 7 forgotten within recentMax ids")
	}
	for id := uint64(100000); id < 100000+recentMax; id++ {
		s.repeatedLocked(msg(id), 7)
	}
	if s.repeatedLocked(msg(7), 8) {
		t.Fatal("id 7 still remembered after 2*recentMax newer ids")
	}
	if s.repeatedLocked(msg(100000), 101) || s.fl.recent != nil {
		t.Fatal("the window is not let go once passed")
	}
}
