package trie

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The fleet: 1,000 sites × 1,000 devices, each device's subscriber on its
// own telemetry topic, two dashboards per site on fleet/{site}/+/status, four
// archivers on fleet/#, and an ingest group of eight on
// $share/ingest/fleet/+/+/telemetry: 1,002,012 subscriptions.
const (
	fleetSites   = 1000
	fleetDevices = 1000
	benchTopics  = 1 << 16
)

type fleet struct {
	tr     *Trie
	base   *baseTrie // built on first use
	devs   []*testSub
	topics [][]byte // telemetry topics in random order
}

var (
	fleetOnce sync.Once
	theFleet  *fleet
	baseOnce  sync.Once
)

// fleetFilters calls fn with every subscription of the fleet.
func fleetFilters(devs []*testSub, fn func(s *testSub, filter string, o Options)) {
	var buf []byte
	i := 0
	for site := range fleetSites {
		for dev := range fleetDevices {
			buf = fmt.Appendf(buf[:0], "fleet/s%04d/d%04d/telemetry", site, dev)
			fn(devs[i], string(buf), Options{QoS: 1})
			i++
		}
		for k := range 2 {
			buf = fmt.Appendf(buf[:0], "fleet/s%04d/+/status", site)
			fn(devs[(i+k)%len(devs)], string(buf), Options{QoS: 0, ID: 7})
		}
	}
	for k := range 4 {
		fn(devs[k*1000], "fleet/#", Options{QoS: 0, ID: 9})
	}
	for k := range 8 {
		fn(devs[k], "$share/ingest/fleet/+/+/telemetry", Options{QoS: 1})
	}
}

func getFleet(b *testing.B) *fleet {
	fleetOnce.Do(func() {
		f := &fleet{tr: New(Config{CacheSize: benchTopics * 2}), devs: newSubs(fleetSites*fleetDevices, "")}
		fleetFilters(f.devs, func(s *testSub, filter string, o Options) {
			if _, err := f.tr.Subscribe(s, filter, o); err != nil {
				panic(err)
			}
		})
		rng := rand.New(rand.NewPCG(1, 1))
		for range benchTopics {
			f.topics = append(f.topics, fmt.Appendf(nil, "fleet/s%04d/d%04d/telemetry", rng.IntN(fleetSites), rng.IntN(fleetDevices)))
		}
		theFleet = f
	})
	b.ResetTimer()
	return theFleet
}

func (f *fleet) baseline() *baseTrie {
	baseOnce.Do(func() {
		f.base = &baseTrie{}
		fleetFilters(f.devs, func(s *testSub, filter string, o Options) {
			if _, inner, ok := ParseShared(filter); ok {
				filter = inner // the baseline has no groups: one more ordinary subscriber
			}
			f.base.subscribe(s, filter, o)
		})
	})
	return f.base
}

// checkFleetResult makes sure a benchmark measures real work: the device,
// the four archivers and one ingest member.
func checkFleetResult(b *testing.B, r *Result) {
	if len(r.Subs) < 5 || len(r.Shared) != 1 {
		b.Fatalf("fleet match gave %d deliveries and %d shared, want ≥5 and 1", len(r.Subs), len(r.Shared))
	}
}

// BenchmarkMatch1M: one match against the 1M-subscription fleet, through
// the cache (every topic cached) and without it.
func BenchmarkMatch1M(b *testing.B) {
	// hot: 1,024 topics, their entries stay in the CPU caches; spread: 65,536
	// topics, most lookups miss the CPU caches.
	for _, c := range []struct {
		name   string
		topics int
	}{{"cached-hot", 1024}, {"cached-spread", benchTopics}} {
		b.Run(c.name, func(b *testing.B) {
			f := getFleet(b)
			var r Result
			for _, topic := range f.topics {
				f.tr.Match(topic, nil, &r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				f.tr.Match(f.topics[i%c.topics], f.devs[i%benchTopics], &r)
			}
			checkFleetResult(b, &r)
		})
	}
	b.Run("uncached", func(b *testing.B) {
		f := getFleet(b)
		var r Result
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			topic := f.topics[i%benchTopics]
			r.reset()
			f.tr.matchUncached(&f.tr.lits[maphash.Bytes(f.tr.seed, topic)&f.tr.mask], topic, f.devs[i%benchTopics], &r)
		}
		checkFleetResult(b, &r)
	})
}

// BenchmarkMatchParallel: matches from all Ps at once (run with -cpu 1,2),
// against the single-mutex baseline trie below.
func BenchmarkMatchParallel(b *testing.B) {
	b.Run("cached", func(b *testing.B) {
		f := getFleet(b)
		var warm Result
		for _, topic := range f.topics {
			f.tr.Match(topic, nil, &warm)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var r Result
			for i := rand.IntN(benchTopics); pb.Next(); i++ {
				f.tr.Match(f.topics[i%benchTopics], nil, &r)
			}
		})
	})
	b.Run("uncached", func(b *testing.B) {
		f := getFleet(b)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var r Result
			for i := rand.IntN(benchTopics); pb.Next(); i++ {
				topic := f.topics[i%benchTopics]
				r.reset()
				f.tr.matchUncached(&f.tr.lits[maphash.Bytes(f.tr.seed, topic)&f.tr.mask], topic, nil, &r)
			}
		})
	})
	b.Run("mutex-baseline", func(b *testing.B) {
		base := getFleet(b).baseline()
		f := theFleet
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var out []sub
			for i := rand.IntN(benchTopics); pb.Next(); i++ {
				out = base.match(f.topics[i%benchTopics], out[:0])
			}
		})
	})
}

// BenchmarkSubscribe: one Subscribe plus one Unsubscribe on the 1M fleet
// (with a warm cache, so wildcard changes pay for cache invalidation).
func BenchmarkSubscribe(b *testing.B) {
	for _, kind := range []string{"literal", "wildcard", "shared"} {
		b.Run(kind, func(b *testing.B) {
			f := getFleet(b)
			var r Result
			for _, topic := range f.topics[:4096] {
				f.tr.Match(topic, nil, &r)
			}
			filters := make([]string, 4096)
			for i := range filters {
				switch kind {
				case "literal":
					filters[i] = fmt.Sprintf("fleet/s%04d/d%04d/cmd", i%fleetSites, i)
				case "wildcard":
					filters[i] = fmt.Sprintf("fleet/s%04d/+/cmd", i%fleetSites)
				case "shared":
					filters[i] = fmt.Sprintf("$share/g%d/fleet/s%04d/+/telemetry", i%8, i%fleetSites)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				s, filter := f.devs[i%len(f.devs)], filters[i%len(filters)]
				f.tr.Subscribe(s, filter, Options{QoS: 1})
				f.tr.Unsubscribe(s, filter)
			}
		})
	}
}

// BenchmarkBytesPerSub builds the fleet in a fresh trie and reports the heap
// it holds per subscription (subscriber handles excluded: they exist before).
func BenchmarkBytesPerSub(b *testing.B) {
	devs := newSubs(fleetSites*fleetDevices, "")
	var inuse, alloc float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tr := New(Config{CacheSize: 4096})
		fleetFilters(devs, func(s *testSub, filter string, o Options) { tr.Subscribe(s, filter, o) })
		runtime.GC()
		runtime.ReadMemStats(&after)
		n := float64(tr.Count())
		inuse = float64(after.HeapInuse-before.HeapInuse) / n
		alloc = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(tr)
	}
	b.ReportMetric(inuse, "inuse-B/sub")
	b.ReportMetric(alloc, "live-B/sub")
}

// baseTrie is the baseline: a plain trie of levels ('+' and '#' as map
// keys) under one sync.Mutex, without cache, deduplication or groups.
type baseTrie struct {
	mu   sync.Mutex
	root baseNode
}

type baseNode struct {
	kids map[string]*baseNode
	subs []sub
}

func (t *baseTrie) subscribe(s Subscriber, filter string, o Options) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	for _, level := range strings.Split(filter, "/") {
		c := n.kids[level]
		if c == nil {
			if n.kids == nil {
				n.kids = map[string]*baseNode{}
			}
			c = &baseNode{}
			n.kids[level] = c
		}
		n = c
	}
	n.subs = append(n.subs, newSub(s, o))
}

func (t *baseTrie) match(topic []byte, out []sub) []sub {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.root.match(topic, topic[0] == '$', out)
}

func (n *baseNode) match(rest []byte, dollar bool, out []sub) []sub {
	level, more := rest, false
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		level, rest, more = rest[:i], rest[i+1:], true
	}
	if c := n.kids["#"]; c != nil && !dollar {
		out = append(out, c.subs...)
	}
	for _, c := range [2]*baseNode{n.kids[string(level)], n.kids["+"]} {
		switch {
		case c == nil || (dollar && c == n.kids["+"]):
		case more:
			out = c.match(rest, false, out)
		default:
			out = append(out, c.subs...)
			if h := c.kids["#"]; h != nil {
				out = append(out, h.subs...)
			}
		}
	}
	return out
}
