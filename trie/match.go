package trie

import (
	"bytes"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// Delivery is one copy of a message to send.
type Delivery struct {
	Sub               Subscriber
	QoS               byte
	RetainAsPublished bool
	IDs               []uint32 // subscription identifiers; may alias trie-owned immutable memory
}

// Result receives a Match. The zero value is ready to use; reuse it so that
// steady-state matching allocates nothing. Not safe for concurrent use.
type Result struct {
	Subs   []Delivery // ordinary subscriptions: one per subscriber
	Shared []Delivery // one chosen member per matching shared group

	raw    []sub    // matching subscriptions before deduplication
	groups []*group // matching shared groups
	pos    []int32  // raw[i] went to Subs[pos[i]], or -1 (no-local)
	ends   []int32  // per delivery: end of its IDs in ids
	ids    []uint32 // arena of the deliveries' IDs
	seen   map[Subscriber]int32
	mapped bool // seen indexes Subs
}

// linearMax is the number of deliveries up to which deduplication scans
// Subs instead of using a map: small fan-outs are the common case.
const linearMax = 8

func (r *Result) reset() {
	clear(r.Subs) // drop references to subscribers
	clear(r.Shared)
	clear(r.raw)
	clear(r.groups)
	r.Subs, r.Shared, r.raw, r.groups = r.Subs[:0], r.Shared[:0], r.raw[:0], r.groups[:0]
	r.pos, r.ids = r.pos[:0], r.ids[:0]
	if r.mapped {
		clear(r.seen)
		r.mapped = false
	}
}

// Match fills r (reset first) with the deliveries of a PUBLISH to topic by
// from (nil when not a subscriber): one Delivery per subscriber for its
// ordinary subscriptions, with the highest QoS and all subscription
// identifiers of its matching ones [MQTT-3.3.4-2] [MQTT-3.3.4-3]; a
// subscription with No Local does not match from's own messages
// [MQTT-3.8.3-3]; plus one chosen member of each matching shared group. r's
// slices are valid until the next Match into r and must be treated as
// read-only.
//
// On a cache hit Match takes one read lock and allocates nothing; without the
// cache it read-locks the topic's literal shard and up to two wildcard
// stripes, one after the other. So a Match running alongside Subscribe and
// Unsubscribe calls sees each of them entirely or not at all, and every call
// that returned before Match began, but is not one atomic snapshot of all of
// them: it may see a subscriber's new filter and its old one together.
func (t *Trie) Match(topic []byte, from Subscriber, r *Result) {
	r.reset()
	if len(topic) == 0 {
		return
	}
	sh := &t.lits[maphash.Bytes(t.seed, topic)&t.mask]
	if !t.cache {
		t.matchUncached(sh, topic, from, r)
		return
	}
	c := &sh.cache
	c.mu.RLock()
	e := c.m[string(topic)]
	c.mu.RUnlock()
	if e == nil {
		gen := c.gen.Load() // before reading the tree: see cache.put
		t.collect(sh, topic, r)
		r.dedupe(nil)
		e = newEntry(r)
		c.put(topic, e, gen)
		r.reset()
	}
	e.fill(from, r)
}

// matchUncached is Match without the cache (and the benchmark of it).
func (t *Trie) matchUncached(sh *litShard, topic []byte, from Subscriber, r *Result) {
	t.collect(sh, topic, r)
	r.dedupe(from)
	r.pickShared(r.groups)
}

// collect appends the matching subscriptions and groups to r.raw and
// r.groups, holding one read lock at a time.
func (t *Trie) collect(sh *litShard, topic []byte, r *Result) {
	sh.mu.RLock()
	if x, ok := sh.subs[string(topic)]; ok {
		r.raw = append(r.raw, x)
		if len(sh.extra) > 0 {
			r.raw = append(r.raw, sh.extra[string(topic)]...)
		}
	}
	if len(sh.groups) > 0 {
		r.groups = append(r.groups, sh.groups[string(topic)]...)
	}
	sh.mu.RUnlock()

	first := topic
	if i := bytes.IndexByte(topic, '/'); i >= 0 {
		first = topic[:i]
	}
	if st := &t.wild[maphash.Bytes(t.seed, first)&t.mask]; st.n.Load() > 0 {
		st.mu.RLock()
		st.root.collect(topic, r)
		st.mu.RUnlock()
	}
	// A filter starting with a wildcard never matches a topic starting
	// with '$' [MQTT-4.7.2-1].
	if st := &t.wild[len(t.wild)-1]; topic[0] != '$' && st.n.Load() > 0 {
		st.mu.RLock()
		st.root.collect(topic, r)
		st.mu.RUnlock()
	}
}

// dedupe turns r.raw into r.Subs: one Delivery per subscriber with the
// highest QoS [MQTT-3.3.4-2], retain-as-published if any matching
// subscription has it, and all subscription identifiers [MQTT-3.3.4-3].
// Subscriptions with No Local are skipped for from [MQTT-3.8.3-3].
func (r *Result) dedupe(from Subscriber) {
	withIDs := 0
	for i := range r.raw {
		x := &r.raw[i]
		if from != nil && x.flags&flagNoLocal != 0 && x.s == from {
			r.pos = append(r.pos, -1) // [MQTT-3.8.3-3]
			continue
		}
		j := r.find(x.s)
		if j < 0 {
			j = len(r.Subs)
			r.Subs = append(r.Subs, Delivery{Sub: x.s, QoS: x.qos, RetainAsPublished: x.flags&flagRAP != 0})
			r.added(x.s, j)
		} else {
			d := &r.Subs[j]
			d.QoS = max(d.QoS, x.qos)
			d.RetainAsPublished = d.RetainAsPublished || x.flags&flagRAP != 0
		}
		r.pos = append(r.pos, int32(j))
		if x.id != 0 {
			withIDs++
		}
	}
	if withIDs > 0 {
		r.gatherIDs(withIDs)
	}
}

func (r *Result) find(s Subscriber) int {
	if r.mapped {
		if j, ok := r.seen[s]; ok {
			return int(j)
		}
		return -1
	}
	for j := range r.Subs {
		if r.Subs[j].Sub == s {
			return j
		}
	}
	return -1
}

// added indexes Subs[j] once the fan-out outgrows a linear scan.
func (r *Result) added(s Subscriber, j int) {
	if r.mapped {
		r.seen[s] = int32(j)
		return
	}
	if len(r.Subs) <= linearMax {
		return
	}
	if r.seen == nil {
		r.seen = make(map[Subscriber]int32)
	}
	for k := range r.Subs {
		r.seen[r.Subs[k].Sub] = int32(k)
	}
	r.mapped = true
}

// gatherIDs lays the identifiers out in r.ids, contiguous per delivery.
func (r *Result) gatherIDs(total int) {
	n := len(r.Subs)
	r.ends = slices.Grow(r.ends[:0], n)[:n]
	clear(r.ends)
	for i := range r.raw {
		if r.raw[i].id != 0 && r.pos[i] >= 0 {
			r.ends[r.pos[i]]++
		}
	}
	off := int32(0)
	for j, c := range r.ends { // counts → starts
		r.ends[j] = off
		off += c
	}
	r.ids = slices.Grow(r.ids[:0], total)[:total]
	for i := range r.raw {
		if id := r.raw[i].id; id != 0 && r.pos[i] >= 0 {
			j := r.pos[i]
			r.ids[r.ends[j]] = id
			r.ends[j]++ // starts → ends
		}
	}
	start := int32(0)
	for j, end := range r.ends {
		if end > start {
			r.Subs[j].IDs = r.ids[start:end:end]
		}
		start = end
	}
}

func (r *Result) pickShared(groups []*group) {
	for _, g := range groups {
		if m, ok := g.pick(); ok {
			r.Shared = append(r.Shared, m.delivery())
		}
	}
}

// entry is a cached match: the deliveries as if from were nil, the changes
// for a publisher whose own No Local subscriptions match, and the groups
// (the pick is made per message). Immutable once built.
type entry struct {
	subs   []Delivery
	local  []localAlt
	groups []*group
}

// localAlt is subs[i] as seen by a publisher equal to subs[i].Sub: without
// its No Local subscriptions, or dropped when none remain [MQTT-3.8.3-3].
type localAlt struct {
	i    int
	drop bool
	d    Delivery
}

// newEntry builds an entry from a Result deduplicated with from == nil.
func newEntry(r *Result) *entry {
	e := &entry{subs: slices.Clone(r.Subs), groups: slices.Clone(r.groups)}
	var ids []uint32
	for _, d := range r.Subs {
		ids = append(ids, d.IDs...)
	}
	for j := range e.subs {
		n := len(e.subs[j].IDs)
		e.subs[j].IDs, ids = ids[:n:n], ids[n:]
		if n == 0 {
			e.subs[j].IDs = nil
		}
	}
	for i := range r.raw {
		if r.raw[i].flags&flagNoLocal == 0 {
			continue
		}
		j := int(r.pos[i])
		if slices.ContainsFunc(e.local, func(a localAlt) bool { return a.i == j }) {
			continue
		}
		a := localAlt{i: j, drop: true, d: Delivery{Sub: e.subs[j].Sub}}
		for k := range r.raw {
			x := &r.raw[k]
			if int(r.pos[k]) != j || x.flags&flagNoLocal != 0 {
				continue
			}
			a.d.QoS = max(a.d.QoS, x.qos)
			a.d.RetainAsPublished = a.d.RetainAsPublished || x.flags&flagRAP != 0
			if x.id != 0 {
				a.d.IDs = append(a.d.IDs, x.id)
			}
			a.drop = false
		}
		e.local = append(e.local, a)
	}
	return e
}

// fill writes the entry's deliveries for publisher from into r.
func (e *entry) fill(from Subscriber, r *Result) {
	r.Subs = append(r.Subs, e.subs...)
	if from != nil {
		for k := range e.local {
			a := &e.local[k]
			if e.subs[a.i].Sub != from {
				continue
			}
			if a.drop {
				r.Subs = slices.Delete(r.Subs, a.i, a.i+1)
			} else {
				r.Subs[a.i] = a.d
			}
			break
		}
	}
	r.pickShared(e.groups)
}

// cache is one shard of the match cache: topic → entry, bounded, with random
// eviction. idx holds the same topics as a tree of levels, so that a
// wildcard change visits only the cached topics its filter can match instead
// of testing every one.
type cache struct {
	mu  sync.RWMutex
	m   map[string]*entry
	idx *Retained[struct{}]
	max int
	gen atomic.Uint64 // bumped by every invalidation, under mu
}

// put stores e unless an invalidation happened since gen was read. The
// reader loads gen before it reads the tree; a writer changes the tree and
// then bumps gen, so a result built from an older tree is never stored
// after its invalidation has run.
func (c *cache) put(topic []byte, e *entry, gen uint64) {
	c.mu.Lock()
	if c.gen.Load() == gen {
		if len(c.m) >= c.max {
			for k := range c.m { // map iteration starts at a random place
				delete(c.m, k)
				c.idx.Delete(k)
				break
			}
		}
		key := string(topic)
		c.m[key] = e
		c.idx.Set(key, struct{}{})
	}
	c.mu.Unlock()
}

// dropTopic invalidates one topic.
func (c *cache) dropTopic(topic string) {
	if c.m == nil {
		return
	}
	c.mu.Lock()
	c.gen.Add(1)
	delete(c.m, topic)
	c.idx.Delete(topic)
	c.mu.Unlock()
}

// dropFilter invalidates every cached topic that filter matches.
func (c *cache) dropFilter(filter string) {
	if c.m == nil {
		return
	}
	c.mu.Lock()
	c.gen.Add(1)
	c.idx.Match(filter, func(topic string, _ struct{}) bool {
		delete(c.m, topic)
		c.idx.Delete(topic)
		return true
	})
	c.mu.Unlock()
}
