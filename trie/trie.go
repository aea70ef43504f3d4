package trie

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// Subscriber is the opaque handle of whoever subscribed (a session, or a
// remote cluster node). Implementations are pointers (comparable).
type Subscriber interface {
	// Busy reports that its queue is full: a shared-subscription pick skips
	// it when another member can take the message. Called from any goroutine,
	// so it must be cheap and safe for concurrent use.
	Busy() bool
}

// Options are the subscription options of one SUBSCRIBE entry.
type Options struct {
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte   // 0, 1, 2: stored only, the broker acts on it
	ID                uint32 // v5 subscription identifier, 0 = none
}

// Config sizes a Trie.
type Config struct {
	Shards    int // lock stripes, rounded up to a power of two (0 = 32)
	CacheSize int // max cached topics; 0 disables the match cache
}

// Trie maps topic filters to subscribers. All methods are safe for
// concurrent use from any goroutine.
//
// Layout and locks. Literal filters (no wildcard, by far the most common in
// fleets: one topic per device) live in flat maps, sharded by a hash of the
// whole filter, so a subscribe locks 1/Shards of them and a match finds them
// with one map lookup. Wildcard filters live in tries, striped by their first
// level; filters whose first level is itself a wildcard live in one dedicated
// stripe that every match of a non-'$' topic also reads. A match therefore
// read-locks at most three locks, one at a time, never nested.
//
// The match cache (topic → deduplicated result) is sharded like the literal
// maps, by a hash of the topic. A literal subscribe invalidates one entry; a
// wildcard subscribe invalidates the cached topics its filter matches, in
// every cache shard, while it still holds its stripe's write lock. Each cache
// shard has a generation, bumped on every invalidation, so a match that
// computed its result before a concurrent change does not store it.
//
// Lock order: a shard's or stripe's mu, then any cache shard's mu.
type Trie struct {
	seed  maphash.Seed
	mask  uint64
	lits  []litShard // literal filters and the match cache, by hash of the topic
	wild  []stripe   // wildcard filters by first level; wild[len-1]: first level is a wildcard
	count atomic.Int64
	cache bool
	obs   Observer // nil unless a cluster listens (observe.go)
}

// litShard holds the literal filters whose hash falls in it, and the cached
// results of the topics whose hash falls in it.
type litShard struct {
	mu     sync.RWMutex
	subs   map[string]sub      // filter → its first ordinary subscription, inline: most topics have one
	extra  map[string][]sub    // filter → the others, in subscription order
	groups map[string][]*group // filter → shared groups on that (literal) filter
	reg    registry            // subscriber → its filters here, for RemoveAll
	cache  cache
	_      [64]byte // keep neighbouring shards' locks off one cache line
}

// stripe is one trie of wildcard filters.
type stripe struct {
	mu   sync.RWMutex
	root node
	reg  registry
	n    atomic.Int64 // subscriptions held; 0 lets a match skip the lock
	_    [64]byte
}

// sub is one ordinary subscription, stored by value (24 bytes).
type sub struct {
	s     Subscriber
	id    uint32
	qos   byte
	flags byte
}

const (
	flagNoLocal = 1 << iota
	flagRAP
	rhShift = 2 // retain handling in bits 2-3
)

func newSub(s Subscriber, o Options) sub {
	x := sub{s: s, id: o.ID, qos: o.QoS, flags: (o.RetainHandling & 3) << rhShift}
	if o.NoLocal {
		x.flags |= flagNoLocal
	}
	if o.RetainAsPublished {
		x.flags |= flagRAP
	}
	return x
}

func (x *sub) options() Options {
	return Options{QoS: x.qos, NoLocal: x.flags&flagNoLocal != 0, RetainAsPublished: x.flags&flagRAP != 0,
		RetainHandling: x.flags >> rhShift & 3, ID: x.id}
}

// New returns an empty Trie.
func New(cfg Config) *Trie {
	n := 1
	want := cfg.Shards
	if want <= 0 {
		want = 32
	}
	for n < want {
		n <<= 1
	}
	t := &Trie{seed: maphash.MakeSeed(), mask: uint64(n - 1), lits: make([]litShard, n), wild: make([]stripe, n+1)}
	per := 0
	if cfg.CacheSize > 0 {
		t.cache = true
		per = max(1, cfg.CacheSize/n)
	}
	for i := range t.lits {
		sh := &t.lits[i]
		sh.subs = make(map[string]sub)
		sh.extra = make(map[string][]sub)
		sh.groups = make(map[string][]*group)
		sh.cache.max = per
		if per > 0 {
			sh.cache.m = make(map[string]*entry)
			sh.cache.idx = NewRetained[struct{}]()
		}
	}
	return t
}

func (t *Trie) litShardOf(topic string) *litShard {
	return &t.lits[maphash.String(t.seed, topic)&t.mask]
}

// stripeOf returns the stripe of a wildcard filter.
func (t *Trie) stripeOf(filter string) *stripe {
	first := firstLevel(filter)
	if first == "+" || first == "#" {
		return &t.wild[len(t.wild)-1]
	}
	return &t.wild[maphash.String(t.seed, first)&t.mask]
}

// Count returns the number of subscriptions held, shared memberships included.
func (t *Trie) Count() int { return int(t.count.Load()) }

// Subscribe adds a subscription, or replaces the one of the same subscriber
// and filter in place [MQTT-3.8.4-3] and returns existed=true. filter may be
// "$share/{group}/{filter}". err wraps ErrInvalidFilter.
func (t *Trie) Subscribe(s Subscriber, filter string, o Options) (existed bool, err error) {
	if err := ValidFilter(filter); err != nil {
		return false, err
	}
	share, target, shared := ParseShared(filter)
	if !shared {
		target = filter
	}
	x := newSub(s, o)
	if isLiteral(target) {
		sh := t.litShardOf(target)
		sh.mu.Lock()
		var changed, owned bool
		if shared {
			var list []*group
			list, existed, changed = joinGroup(sh.groups[target], share, x)
			sh.groups[target] = list
		} else {
			var key string
			existed, key = sh.put(target, x)
			if key != "" {
				filter, owned = key, true // the new map key, shared with the registry
			}
			changed = true
		}
		if !existed {
			if !owned {
				filter = strings.Clone(filter) // never pin the caller's memory
			}
			sh.reg.add(s, filter)
			t.count.Add(1)
			t.observe(s, filter, true)
		}
		if changed {
			sh.cache.dropTopic(target)
		}
		sh.mu.Unlock()
		return existed, nil
	}
	st := t.stripeOf(target)
	st.mu.Lock()
	leaf := st.root.insert(target)
	var changed bool
	if shared {
		leaf.groups, existed, changed = joinGroup(leaf.groups, share, x)
	} else {
		leaf.subs, existed = putSub(leaf.subs, x)
		changed = true
	}
	if !existed {
		f := strings.Clone(filter) // never pin the caller's memory
		st.reg.add(s, f)
		st.n.Add(1)
		t.count.Add(1)
		t.observe(s, f, true)
	}
	if changed {
		t.dropMatching(target)
	}
	st.mu.Unlock()
	return existed, nil
}

// Unsubscribe removes the subscription of s to filter, if any.
func (t *Trie) Unsubscribe(s Subscriber, filter string) (existed bool) {
	_, target, shared := ParseShared(filter)
	if !shared {
		target = filter
	}
	if isLiteral(target) {
		sh := t.litShardOf(target)
		sh.mu.Lock()
		existed = t.removeLiteral(sh, s, filter)
		sh.mu.Unlock()
		return existed
	}
	st := t.stripeOf(target)
	st.mu.Lock()
	existed = t.removeWild(st, s, filter)
	st.mu.Unlock()
	return existed
}

// RemoveAll removes every subscription of s and returns how many there were.
func (t *Trie) RemoveAll(s Subscriber) int {
	n := 0
	for i := range t.lits {
		sh := &t.lits[i]
		sh.mu.Lock()
		for _, f := range sh.reg.filters(s) {
			if t.removeLiteral(sh, s, f) {
				n++
			}
		}
		sh.mu.Unlock()
	}
	for i := range t.wild {
		st := &t.wild[i]
		if st.n.Load() == 0 {
			continue
		}
		st.mu.Lock()
		for _, f := range st.reg.filters(s) {
			if t.removeWild(st, s, f) {
				n++
			}
		}
		st.mu.Unlock()
	}
	return n
}

// removeLiteral removes s's subscription to a (possibly shared) filter whose
// topic part is literal. Assumes sh.mu is write-locked.
func (t *Trie) removeLiteral(sh *litShard, s Subscriber, filter string) bool {
	share, target, shared := ParseShared(filter)
	var existed, changed bool
	if shared {
		var list []*group
		list, existed, changed = leaveGroup(sh.groups[target], share, s)
		if len(list) == 0 {
			delete(sh.groups, target)
		} else {
			sh.groups[target] = list
		}
	} else {
		target = filter
		existed = sh.drop(target, s)
		changed = existed
	}
	if existed {
		sh.reg.remove(s, filter)
		t.count.Add(-1)
		t.observe(s, filter, false)
	}
	if changed {
		sh.cache.dropTopic(target)
	}
	return existed
}

// removeWild removes s's subscription to a (possibly shared) wildcard filter.
// Assumes st.mu is write-locked.
func (t *Trie) removeWild(st *stripe, s Subscriber, filter string) bool {
	share, target, shared := ParseShared(filter)
	if !shared {
		target = filter
	}
	var existed, changed bool
	st.root.remove(target, func(leaf *node) {
		if shared {
			leaf.groups, existed, changed = leaveGroup(leaf.groups, share, s)
		} else {
			leaf.subs, existed = dropSub(leaf.subs, s)
			changed = existed
		}
	})
	if existed {
		st.reg.remove(s, filter)
		st.n.Add(-1)
		t.count.Add(-1)
		t.observe(s, filter, false)
	}
	if changed {
		t.dropMatching(target)
	}
	return existed
}

// dropMatching invalidates, in every cache shard, the cached topics that a
// wildcard filter matches. Assumes the filter's stripe is write-locked.
func (t *Trie) dropMatching(filter string) {
	if !t.cache {
		return
	}
	for i := range t.lits {
		t.lits[i].cache.dropFilter(filter)
	}
}

// put adds or replaces the subscription of x.s to a literal filter; key is
// the filter's new map key when the filter was not held before. Assumes the
// write lock.
func (sh *litShard) put(filter string, x sub) (existed bool, key string) {
	first, ok := sh.subs[filter]
	switch {
	case !ok:
		key = strings.Clone(filter)
		sh.subs[key] = x
		return false, key
	case first.s == x.s:
		sh.subs[filter] = x
		return true, ""
	}
	sh.extra[filter], existed = putSub(sh.extra[filter], x)
	return existed, ""
}

// drop removes the subscription of s to a literal filter, keeping the
// others' order. Assumes the write lock.
func (sh *litShard) drop(filter string, s Subscriber) bool {
	first, ok := sh.subs[filter]
	if !ok {
		return false
	}
	rest := sh.extra[filter]
	if first.s == s {
		if len(rest) == 0 {
			delete(sh.subs, filter)
			return true
		}
		sh.subs[filter] = rest[0]
		rest, _ = dropSub(rest, rest[0].s)
	} else {
		var existed bool
		if rest, existed = dropSub(rest, s); !existed {
			return false
		}
	}
	if len(rest) == 0 {
		delete(sh.extra, filter)
	} else {
		sh.extra[filter] = rest
	}
	return true
}

// putSub replaces the subscription of x.s in place or appends x.
func putSub(list []sub, x sub) ([]sub, bool) {
	for i := range list {
		if list[i].s == x.s {
			list[i] = x
			return list, true
		}
	}
	return append(list, x), false
}

// dropSub removes the subscription of s, keeping the others' order; an empty
// result is nil so its memory is released.
func dropSub(list []sub, s Subscriber) ([]sub, bool) {
	for i := range list {
		if list[i].s == s {
			if len(list) == 1 {
				return nil, true
			}
			copy(list[i:], list[i+1:])
			list[len(list)-1] = sub{}
			return list[:len(list)-1], true
		}
	}
	return list, false
}

// registry records each subscriber's filters in one lock domain, so that
// RemoveAll never searches the tree. Most subscribers hold one filter per
// domain, so the first is a plain map value and the rest go to a second map.
type registry struct {
	first map[Subscriber]string
	more  map[Subscriber][]string
}

func (g *registry) add(s Subscriber, filter string) {
	if g.first == nil {
		g.first = make(map[Subscriber]string)
	}
	if _, ok := g.first[s]; !ok {
		g.first[s] = filter
		return
	}
	if g.more == nil {
		g.more = make(map[Subscriber][]string)
	}
	g.more[s] = append(g.more[s], filter)
}

func (g *registry) remove(s Subscriber, filter string) {
	rest := g.more[s]
	if g.first[s] == filter {
		if len(rest) == 0 {
			delete(g.first, s)
			return
		}
		g.first[s] = rest[len(rest)-1]
		rest = rest[:len(rest)-1]
	} else {
		for i, f := range rest {
			if f == filter {
				rest[i] = rest[len(rest)-1]
				rest = rest[:len(rest)-1]
				break
			}
		}
	}
	if len(rest) == 0 {
		delete(g.more, s)
	} else {
		g.more[s] = rest
	}
}

// filters returns a copy of s's filters (the caller removes them one by one).
func (g *registry) filters(s Subscriber) []string {
	f, ok := g.first[s]
	if !ok {
		return nil
	}
	return append([]string{f}, g.more[s]...)
}

// Filters returns every filter s subscribes to (shared ones as
// "$share/group/filter"), in no particular order. It takes each lock
// domain's read lock in turn; for inspection, not the message path.
func (t *Trie) Filters(s Subscriber) []string {
	var out []string
	for i := range t.lits {
		sh := &t.lits[i]
		sh.mu.RLock()
		out = append(out, sh.reg.filters(s)...)
		sh.mu.RUnlock()
	}
	for i := range t.wild {
		st := &t.wild[i]
		if st.n.Load() == 0 {
			continue
		}
		st.mu.RLock()
		out = append(out, st.reg.filters(s)...)
		st.mu.RUnlock()
	}
	return out
}
