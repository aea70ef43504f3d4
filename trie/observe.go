package trie

import "strings"

// Observer hears of every subscription added or removed (RemoveAll too),
// under the lock of the filter's shard or stripe, so the events of one filter
// arrive in the order they happened. It must be quick and must not call back
// into the Trie. A cluster uses it to announce which filters a node holds.
type Observer interface {
	Subscription(s Subscriber, filter string, added bool)
}

// SetObserver installs o. Call it before the first Subscribe: it is read
// without a lock. A Trie without an observer pays one nil check per
// subscribe or unsubscribe, nothing per match.
func (t *Trie) SetObserver(o Observer) { t.obs = o }

func (t *Trie) observe(s Subscriber, filter string, added bool) {
	if t.obs != nil {
		t.obs.Subscription(s, filter, added)
	}
}

// PickShared chooses one member of the shared subscription filter
// ("$share/{group}/{filter}") round robin, among the members for which
// skip returns false, preferring one that is not busy. A cluster node uses it
// to hand a message that another node's pick sent here to one of its own
// members (each message goes to one member only, MQTT 5 §4.8.2).
func (t *Trie) PickShared(filter string, skip func(Subscriber) bool) (Delivery, bool) {
	name, target, ok := ParseShared(filter)
	if !ok {
		return Delivery{}, false
	}
	var g *group
	if isLiteral(target) {
		sh := t.litShardOf(target)
		sh.mu.RLock()
		g = findGroup(sh.groups[target], name)
		sh.mu.RUnlock()
	} else {
		st := t.stripeOf(target)
		st.mu.RLock()
		if leaf := st.root.find(target); leaf != nil {
			g = findGroup(leaf.groups, name)
		}
		st.mu.RUnlock()
	}
	if g == nil {
		return Delivery{}, false
	}
	ms := *g.members.Load()
	eligible := uint32(0)
	for i := range ms {
		if !skip(ms[i].s) {
			eligible++
		}
	}
	if eligible == 0 {
		return Delivery{}, false
	}
	// Round robin over the eligible members only, so that skipped ones
	// do not hand their turns to their neighbours.
	want := (g.next.Add(1) - 1) % eligible
	var idle, first *member
	for k, seen := 0, uint32(0); seen < eligible+want && idle == nil; k++ {
		m := &ms[k%len(ms)]
		if skip(m.s) {
			continue
		}
		seen++
		if seen <= want {
			continue
		}
		if first == nil {
			first = m
		}
		if !m.s.Busy() {
			idle = m
		}
	}
	if idle == nil {
		idle = first
	}
	return idle.delivery(), true
}

func findGroup(list []*group, name string) *group {
	for _, g := range list {
		if g.name == name {
			return g
		}
	}
	return nil
}

// find returns the node of filter, or nil. Assumes the read lock.
func (n *node) find(filter string) *node {
	for rest, more := filter, true; more && n != nil; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		switch level {
		case "+":
			n = n.plus
		case "#":
			n = n.hash
		default:
			n = n.lits[level]
		}
	}
	return n
}
