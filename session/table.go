package session

import "hash/maphash"

// sessionTable is the registry's index of sessions by client id: an
// open-addressing hash table (linear probing, at most 3/4 full) of session
// pointers alone. The key is each session's own client id (Session.ID), so a
// slot is 8 bytes where a map[string]*Session keeps a string header beside
// the pointer, plus its control bytes and group slack: 11-21 bytes per
// session instead of 28-57, for every client connected or kept (issue 19).
// Deletion shifts the following entries back, so there are no tombstones and
// a lookup ends at the first empty slot. Not safe for concurrent use: the
// registry's lock guards it.
type sessionTable struct {
	slots []*Session // len is 0 or a power of two
	n     int
	seed  maphash.Seed
}

// minTableSlots is the first table's size.
const minTableSlots = 64

func (t *sessionTable) home(id string) int {
	return int(maphash.String(t.seed, id) & uint64(len(t.slots)-1))
}

// get returns the session of client id, or nil.
func (t *sessionTable) get(id string) *Session {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := t.home(id); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == nil {
			return nil
		}
		if s.ID() == id {
			return s
		}
	}
}

// put adds s under its client id, replacing the session held for that id.
func (t *sessionTable) put(s *Session) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	id := s.ID()
	mask := len(t.slots) - 1
	for i := t.home(id); ; i = (i + 1) & mask {
		o := t.slots[i]
		if o == nil {
			t.slots[i] = s
			t.n++
			return
		}
		if o.ID() == id {
			t.slots[i] = s
			return
		}
	}
}

// del removes s if it is the session held for its client id, and reports
// whether it was.
func (t *sessionTable) del(s *Session) bool {
	if t.n == 0 {
		return false
	}
	id := s.ID()
	mask := len(t.slots) - 1
	i := t.home(id)
	for ; ; i = (i + 1) & mask {
		o := t.slots[i]
		if o == nil {
			return false
		}
		if o.ID() == id {
			if o != s {
				return false
			}
			break
		}
	}
	// Shift back every entry of the run after i that may sit at i: one
	// whose home is not cyclically within (i, j].
	for j := i; ; {
		j = (j + 1) & mask
		o := t.slots[j]
		if o == nil {
			break
		}
		k := t.home(o.ID())
		if i <= j && i < k && k <= j || i > j && (i < k || k <= j) {
			continue
		}
		t.slots[i] = o
		i = j
	}
	t.slots[i] = nil
	t.n--
	return true
}

// len is the number of sessions held.
func (t *sessionTable) len() int { return t.n }

// each calls fn for every session, in no particular order. fn must not add
// or remove sessions.
func (t *sessionTable) each(fn func(*Session)) {
	for _, s := range t.slots {
		if s != nil {
			fn(s)
		}
	}
}

// grow doubles the table (or makes the first) and puts every session back.
func (t *sessionTable) grow() {
	old := t.slots
	if len(old) == 0 {
		t.seed = maphash.MakeSeed()
	}
	t.slots = make([]*Session, max(minTableSlots, 2*len(old)))
	t.n = 0
	for _, s := range old {
		if s != nil {
			t.put(s)
		}
	}
}
