package trie

// Subscriptions returns every filter s subscribes to (shared ones as
// "$share/group/filter") with its options: what a cluster hands over when a
// session moves to another node. It read-locks each lock domain in turn;
// for handover and inspection, not the message path.
func (t *Trie) Subscriptions(s Subscriber) map[string]Options {
	out := map[string]Options{}
	for i := range t.lits {
		sh := &t.lits[i]
		sh.mu.RLock()
		for _, f := range sh.reg.filters(s) {
			if o, ok := sh.options(s, f); ok {
				out[f] = o
			}
		}
		sh.mu.RUnlock()
	}
	for i := range t.wild {
		st := &t.wild[i]
		if st.n.Load() == 0 {
			continue
		}
		st.mu.RLock()
		for _, f := range st.reg.filters(s) {
			share, target, shared := ParseShared(f)
			if !shared {
				target = f
			}
			n := st.root.find(target)
			if n == nil {
				continue
			}
			if o, ok := optionsIn(n.subs, n.groups, s, share, shared); ok {
				out[f] = o
			}
		}
		st.mu.RUnlock()
	}
	return out
}

// options finds s's options for a literal filter. Assumes the read lock.
func (sh *litShard) options(s Subscriber, filter string) (Options, bool) {
	share, target, shared := ParseShared(filter)
	if shared {
		return optionsIn(nil, sh.groups[target], s, share, true)
	}
	if first, ok := sh.subs[filter]; ok && first.s == s {
		return first.options(), true
	}
	return optionsIn(sh.extra[filter], nil, s, "", false)
}

func optionsIn(subs []sub, groups []*group, s Subscriber, share string, shared bool) (Options, bool) {
	if shared {
		g := findGroup(groups, share)
		if g == nil {
			return Options{}, false
		}
		for _, m := range *g.members.Load() {
			if m.s == s {
				return Options{QoS: m.qos, RetainAsPublished: m.rap, ID: m.id[0]}, true
			}
		}
		return Options{}, false
	}
	for i := range subs {
		if subs[i].s == s {
			return subs[i].options(), true
		}
	}
	return Options{}, false
}
