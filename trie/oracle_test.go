package trie

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
)

// testSub is a subscriber handle for tests.
type testSub struct {
	name string
	busy atomic.Bool
}

func (s *testSub) Busy() bool     { return s.busy.Load() }
func (s *testSub) String() string { return s.name }

func newSubs(n int, prefix string) []*testSub {
	out := make([]*testSub, n)
	for i := range out {
		out[i] = &testSub{name: fmt.Sprintf("%s%d", prefix, i)}
	}
	return out
}

// configs are the trie configurations every semantic test runs under: the
// same test body with the match cache off and on, and with one lock stripe.
var configs = []struct {
	name string
	cfg  Config
}{
	{"nocache", Config{}},
	{"cache", Config{CacheSize: 1024}},
	{"tinycache", Config{Shards: 2, CacheSize: 2}}, // constant eviction
	{"onestripe", Config{Shards: 1, CacheSize: 64}},
}

func forConfigs(t *testing.T, body func(t *testing.T, tr *Trie)) {
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) { body(t, New(c.cfg)) })
	}
}

// model is the naive oracle: every subscription in a map, matched one by one
// with MatchFilter.
type model struct {
	subs map[*testSub]map[string]Options
}

func newModel() *model { return &model{subs: map[*testSub]map[string]Options{}} }

func (m *model) subscribe(s *testSub, filter string, o Options) {
	if m.subs[s] == nil {
		m.subs[s] = map[string]Options{}
	}
	m.subs[s][filter] = o
}

func (m *model) unsubscribe(s *testSub, filter string) {
	delete(m.subs[s], filter)
	if len(m.subs[s]) == 0 {
		delete(m.subs, s)
	}
}

func (m *model) count() int {
	n := 0
	for _, fs := range m.subs {
		n += len(fs)
	}
	return n
}

// want is the expected outcome of one match.
type want struct {
	subs   map[Subscriber]Delivery            // exact, IDs sorted
	groups map[string]map[Subscriber]Delivery // "share\x00filter" → members
}

func (m *model) match(topic string, from *testSub) want {
	w := want{subs: map[Subscriber]Delivery{}, groups: map[string]map[Subscriber]Delivery{}}
	for s, fs := range m.subs {
		for f, o := range fs {
			if !MatchFilter(f, topic) {
				continue
			}
			if share, inner, ok := ParseShared(f); ok {
				key := share + "\x00" + inner
				if w.groups[key] == nil {
					w.groups[key] = map[Subscriber]Delivery{}
				}
				w.groups[key][s] = Delivery{Sub: s, QoS: o.QoS, RetainAsPublished: o.RetainAsPublished, IDs: ids(o.ID)}
				continue
			}
			if o.NoLocal && s == from {
				continue
			}
			d, ok := w.subs[s]
			if !ok {
				d = Delivery{Sub: s}
			}
			d.QoS = max(d.QoS, o.QoS)
			d.RetainAsPublished = d.RetainAsPublished || o.RetainAsPublished
			d.IDs = append(d.IDs, ids(o.ID)...)
			slices.Sort(d.IDs)
			w.subs[s] = d
		}
	}
	return w
}

func ids(id uint32) []uint32 {
	if id == 0 {
		return nil
	}
	return []uint32{id}
}

// check compares a Result with the oracle exactly: each expected subscriber
// once with its QoS, flag and identifiers, and one member of each group.
func (w want) check(r *Result) error {
	if len(r.Subs) != len(w.subs) {
		return fmt.Errorf("got %d deliveries %v, want %d %v", len(r.Subs), r.Subs, len(w.subs), w.subs)
	}
	for _, d := range r.Subs {
		e, ok := w.subs[d.Sub]
		if !ok {
			return fmt.Errorf("unexpected delivery to %v", d.Sub)
		}
		if err := sameDelivery(d, e); err != nil {
			return err
		}
	}
	if len(r.Shared) != len(w.groups) {
		return fmt.Errorf("got %d shared deliveries %v, want one for each of %d groups", len(r.Shared), r.Shared, len(w.groups))
	}
	// A subscriber may be in several groups: pair deliveries with groups by
	// bipartite matching (augmenting paths), not greedily.
	owner := map[string]int{} // group → index of the delivery assigned to it
	var assign func(i int, seen map[string]bool) bool
	assign = func(i int, seen map[string]bool) bool {
		for key, members := range w.groups {
			if e, ok := members[r.Shared[i].Sub]; !ok || seen[key] || sameDelivery(r.Shared[i], e) != nil {
				continue
			}
			seen[key] = true
			if j, taken := owner[key]; !taken || assign(j, seen) {
				owner[key] = i
				return true
			}
		}
		return false
	}
	for i := range r.Shared {
		if !assign(i, map[string]bool{}) {
			return fmt.Errorf("shared deliveries %v are not one per matching group %v", r.Shared, w.groups)
		}
	}
	return nil
}

func sameDelivery(got, want Delivery) error {
	gotIDs := slices.Sorted(slices.Values(got.IDs))
	if got.QoS != want.QoS || got.RetainAsPublished != want.RetainAsPublished || !slices.Equal(gotIDs, want.IDs) {
		return fmt.Errorf("delivery to %v: got qos %d rap %v ids %v, want qos %d rap %v ids %v",
			got.Sub, got.QoS, got.RetainAsPublished, gotIDs, want.QoS, want.RetainAsPublished, want.IDs)
	}
	return nil
}

// nodes counts what the trie holds besides the roots: wildcard nodes,
// literal map entries and registry entries. Zero when empty.
func (t *Trie) nodes() int {
	n := 0
	for i := range t.lits {
		sh := &t.lits[i]
		sh.mu.RLock()
		n += len(sh.subs) + len(sh.extra) + len(sh.groups) + len(sh.reg.first) + len(sh.reg.more)
		sh.mu.RUnlock()
	}
	for i := range t.wild {
		st := &t.wild[i]
		st.mu.RLock()
		n += st.root.count() - 1 + len(st.reg.first) + len(st.reg.more) + len(st.root.subs) + len(st.root.groups)
		st.mu.RUnlock()
	}
	return n
}

// cached returns the number of cached topics.
func (t *Trie) cached() int {
	n := 0
	for i := range t.lits {
		c := &t.lits[i].cache
		c.mu.RLock()
		n += len(c.m)
		c.mu.RUnlock()
	}
	return n
}
