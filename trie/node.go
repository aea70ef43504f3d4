package trie

import (
	"bytes"
	"strings"
	"sync/atomic"
)

// node is one level of a wildcard stripe. Wildcard children have their own
// fields so a match never looks '+' or '#' up in the map.
type node struct {
	lits   map[string]*node // literal children, nil when none
	plus   *node            // child for '+'
	hash   *node            // child for '#'
	subs   []sub            // ordinary subscriptions ending here
	groups []*group         // shared groups ending here
}

func (n *node) empty() bool {
	return len(n.lits) == 0 && n.plus == nil && n.hash == nil && len(n.subs) == 0 && len(n.groups) == 0
}

// insert returns the node of filter, creating the path. Assumes the write lock.
func (n *node) insert(filter string) *node {
	for rest, more := filter, true; more; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		switch level {
		case "+":
			if n.plus == nil {
				n.plus = &node{}
			}
			n = n.plus
		case "#":
			if n.hash == nil {
				n.hash = &node{}
			}
			n = n.hash
		default:
			c := n.lits[level]
			if c == nil {
				if n.lits == nil {
					n.lits = make(map[string]*node, 1)
				}
				c = &node{}
				n.lits[strings.Clone(level)] = c
			}
			n = c
		}
	}
	return n
}

// remove calls at on the node of filter, if it exists, then prunes the nodes
// that became empty on the way back up. Assumes the write lock.
func (n *node) remove(filter string, at func(leaf *node)) {
	level, rest, more := strings.Cut(filter, "/")
	var c *node
	switch level {
	case "+":
		c = n.plus
	case "#":
		c = n.hash
	default:
		c = n.lits[level]
	}
	if c == nil {
		return
	}
	if more {
		c.remove(rest, at)
	} else {
		at(c)
	}
	if !c.empty() {
		return
	}
	switch level {
	case "+":
		n.plus = nil
	case "#":
		n.hash = nil
	default:
		delete(n.lits, level)
		if len(n.lits) == 0 {
			n.lits = nil
		}
	}
}

// collect appends to r what matches rest, the topic's remaining levels (at
// least one level, possibly empty). Assumes the read lock.
func (n *node) collect(rest []byte, r *Result) {
	level, more := rest, false
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		level, rest, more = rest[:i], rest[i+1:], true
	}
	if n.hash != nil {
		n.hash.addTo(r) // '#' takes this level and all below [MQTT-4.7.1-1]
	}
	if n.plus != nil {
		n.plus.next(rest, more, r) // '+' takes exactly this level [MQTT-4.7.1-2]
	}
	if n.lits != nil {
		if c := n.lits[string(level)]; c != nil {
			c.next(rest, more, r)
		}
	}
}

// next continues a match at n after one topic level was consumed.
func (n *node) next(rest []byte, more bool, r *Result) {
	if more {
		n.collect(rest, r)
		return
	}
	n.addTo(r)
	if n.hash != nil {
		n.hash.addTo(r) // "sport/#" matches "sport" [MQTT-4.7.1-1]
	}
}

func (n *node) addTo(r *Result) {
	r.raw = append(r.raw, n.subs...)
	r.groups = append(r.groups, n.groups...)
}

// count returns the nodes below and including n (for tests of pruning).
func (n *node) count() int {
	c := 1
	for _, k := range n.lits {
		c += k.count()
	}
	if n.plus != nil {
		c += n.plus.count()
	}
	if n.hash != nil {
		c += n.hash.count()
	}
	return c
}

// group is one shared subscription: a share name on one filter. Its members
// are copy-on-write, so a match (possibly from a cached entry, after the
// locks are released) reads them with one atomic load, and members joining or
// leaving an existing group need not invalidate the cache.
type group struct {
	name    string
	members atomic.Pointer[[]member]
	next    atomic.Uint32 // round-robin cursor
}

// member is immutable once published in a members slice, so a Delivery may
// alias its id.
type member struct {
	s   Subscriber
	qos byte
	rap bool
	id  [1]uint32
}

func (m *member) delivery() Delivery {
	d := Delivery{Sub: m.s, QoS: m.qos, RetainAsPublished: m.rap}
	if m.id[0] != 0 {
		d.IDs = m.id[:]
	}
	return d
}

// pick chooses one member round robin, skipping busy members when one that
// is not busy exists (each message goes to one member only, MQTT 5 §4.8.2).
func (g *group) pick() (*member, bool) {
	ms := *g.members.Load()
	n := uint32(len(ms))
	if n == 0 {
		return nil, false
	}
	start := g.next.Add(1) - 1
	for k := uint32(0); k < n; k++ {
		m := &ms[(start+k)%n]
		if !m.s.Busy() {
			return m, true
		}
	}
	return &ms[start%n], true
}

// joinGroup adds x to the group name (replacing its earlier membership in
// place). created reports a new group, which changes what topics match.
// Assumes the write lock.
func joinGroup(list []*group, name string, x sub) (out []*group, existed, created bool) {
	m := member{s: x.s, qos: x.qos, rap: x.flags&flagRAP != 0, id: [1]uint32{x.id}}
	for _, g := range list {
		if g.name != name {
			continue
		}
		old := *g.members.Load()
		ms := make([]member, len(old), len(old)+1)
		copy(ms, old)
		for i := range ms {
			if ms[i].s == x.s {
				ms[i] = m
				g.members.Store(&ms)
				return list, true, false
			}
		}
		ms = append(ms, m)
		g.members.Store(&ms)
		return list, false, false
	}
	g := &group{name: strings.Clone(name)}
	g.members.Store(&[]member{m})
	return append(list, g), false, true
}

// leaveGroup removes s from the group name; removed reports that the group
// became empty and was dropped. Assumes the write lock.
func leaveGroup(list []*group, name string, s Subscriber) (out []*group, existed, removed bool) {
	for gi, g := range list {
		if g.name != name {
			continue
		}
		old := *g.members.Load()
		for i := range old {
			if old[i].s != s {
				continue
			}
			if len(old) > 1 {
				ms := make([]member, 0, len(old)-1)
				ms = append(append(ms, old[:i]...), old[i+1:]...)
				g.members.Store(&ms)
				return list, true, false
			}
			g.members.Store(&[]member{}) // a cached entry may still hold g
			copy(list[gi:], list[gi+1:])
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			if len(list) == 0 {
				list = nil
			}
			return list, true, true
		}
		return list, false, false
	}
	return list, false, false
}
