package trie

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func mustSub(t *testing.T, tr *Trie, s Subscriber, filter string, o Options) bool {
	t.Helper()
	existed, err := tr.Subscribe(s, filter, o)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", filter, err)
	}
	return existed
}

// matchTwice matches topic twice (a cache miss, then a hit when caching)
// and fails if the two results differ.
func matchTwice(t *testing.T, tr *Trie, topic string, from Subscriber) *Result {
	t.Helper()
	var a, b Result
	tr.Match([]byte(topic), from, &a)
	tr.Match([]byte(topic), from, &b)
	if !sameSubs(a.Subs, b.Subs) || len(a.Shared) != len(b.Shared) {
		t.Fatalf("match %q: first %v / %v, then %v / %v", topic, a.Subs, a.Shared, b.Subs, b.Shared)
	}
	return &b
}

func sameSubs(a, b []Delivery) bool {
	return slices.EqualFunc(a, b, func(x, y Delivery) bool {
		return x.Sub == y.Sub && x.QoS == y.QoS && x.RetainAsPublished == y.RetainAsPublished && slices.Equal(x.IDs, y.IDs)
	})
}

func TestMatchTable(t *testing.T) {
	forConfigs(t, func(t *testing.T, tr *Trie) {
		s := &testSub{name: "s"}
		for _, c := range matchCases {
			mustSub(t, tr, s, c.filter, Options{QoS: 1})
			r := matchTwice(t, tr, c.topic, nil)
			got := len(r.Subs) + len(r.Shared)
			if got != b2i(c.match) {
				t.Errorf("filter %q topic %q: %d deliveries, want match=%v (%s)", c.filter, c.topic, got, c.match, c.why)
			}
			if !tr.Unsubscribe(s, c.filter) {
				t.Errorf("Unsubscribe(%q) found nothing", c.filter)
			}
		}
		if n := tr.nodes(); n != 0 || tr.Count() != 0 {
			t.Errorf("after unsubscribing all: %d nodes, Count %d", n, tr.Count())
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSubscribeInvalid(t *testing.T) {
	tr := New(Config{})
	for _, f := range []string{"", "a/#/b", "a+", "$share//a", "$share/g"} {
		_, err := tr.Subscribe(&testSub{}, f, Options{})
		if !errors.Is(err, ErrInvalidFilter) || !strings.HasPrefix(err.Error(), "trie: ") {
			t.Errorf("Subscribe(%q) = %v, want ErrInvalidFilter", f, err)
		}
	}
	if tr.Count() != 0 {
		t.Errorf("Count = %d after invalid subscribes", tr.Count())
	}
}

// One subscriber, overlapping subscriptions: one delivery with the highest
// QoS [MQTT-3.3.4-2] and every matching subscription identifier
// [MQTT-3.3.4-3] [MQTT-3.3.4-4]; retain-as-published if any asks for it.
func TestOverlapping(t *testing.T) {
	forConfigs(t, func(t *testing.T, tr *Trie) {
		a, b := &testSub{name: "a"}, &testSub{name: "b"}
		mustSub(t, tr, a, "x/y", Options{QoS: 0, ID: 1})
		mustSub(t, tr, a, "x/+", Options{QoS: 2, ID: 2})
		mustSub(t, tr, a, "#", Options{QoS: 1, RetainAsPublished: true})
		mustSub(t, tr, a, "x/#", Options{QoS: 1, ID: 4})
		mustSub(t, tr, b, "x/y", Options{QoS: 1, ID: 7})
		r := matchTwice(t, tr, "x/y", nil)
		if len(r.Subs) != 2 {
			t.Fatalf("got %v, want one delivery each for a and b", r.Subs)
		}
		for _, d := range r.Subs {
			ids := slices.Sorted(slices.Values(d.IDs))
			switch d.Sub {
			case a:
				if d.QoS != 2 || !d.RetainAsPublished || !slices.Equal(ids, []uint32{1, 2, 4}) {
					t.Errorf("a: %+v, want QoS 2, RAP, IDs 1 2 4", d)
				}
			case b:
				if d.QoS != 1 || d.RetainAsPublished || !slices.Equal(ids, []uint32{7}) {
					t.Errorf("b: %+v, want QoS 1, IDs 7", d)
				}
			}
		}
	})
}

// No Local: the publisher's own subscriptions with No Local do not match its
// messages [MQTT-3.8.3-3]; its other matching subscriptions still do.
func TestNoLocal(t *testing.T) {
	forConfigs(t, func(t *testing.T, tr *Trie) {
		a, b := &testSub{name: "a"}, &testSub{name: "b"}
		mustSub(t, tr, a, "chat/#", Options{QoS: 2, NoLocal: true, ID: 1})
		mustSub(t, tr, a, "chat/room1", Options{QoS: 1, ID: 2})
		mustSub(t, tr, a, "chat/room2", Options{QoS: 0, NoLocal: true})
		mustSub(t, tr, b, "chat/#", Options{QoS: 1, NoLocal: true})
		cases := []struct {
			topic string
			from  Subscriber
			want  map[Subscriber]Delivery
		}{
			{"chat/room1", a, map[Subscriber]Delivery{a: {QoS: 1, IDs: []uint32{2}}, b: {QoS: 1}}},
			{"chat/room1", b, map[Subscriber]Delivery{a: {QoS: 2, IDs: []uint32{1, 2}}}},
			{"chat/room1", nil, map[Subscriber]Delivery{a: {QoS: 2, IDs: []uint32{1, 2}}, b: {QoS: 1}}},
			{"chat/room2", a, map[Subscriber]Delivery{b: {QoS: 1}}},
			{"chat/room2", b, map[Subscriber]Delivery{a: {QoS: 2, IDs: []uint32{1}}}},
			{"chat/room3", &testSub{}, map[Subscriber]Delivery{a: {QoS: 2, IDs: []uint32{1}}, b: {QoS: 1}}},
		}
		for _, c := range cases {
			r := matchTwice(t, tr, c.topic, c.from)
			if len(r.Subs) != len(c.want) {
				t.Errorf("%s from %v: got %v, want %v", c.topic, c.from, r.Subs, c.want)
				continue
			}
			for _, d := range r.Subs {
				w := c.want[d.Sub]
				w.Sub = d.Sub
				if err := sameDelivery(d, w); err != nil {
					t.Errorf("%s from %v: %v", c.topic, c.from, err)
				}
			}
		}
	})
}

// Shared subscriptions (MQTT 5 §4.8.2): each message goes to exactly one
// member of each matching group, spread round robin, skipping busy members
// when another can take it; groups are independent of each other and of
// ordinary subscriptions to the same filter [MQTT-4.8.2-2].
func TestShared(t *testing.T) {
	forConfigs(t, func(t *testing.T, tr *Trie) {
		m := newSubs(3, "m")
		other, plain := &testSub{name: "other"}, &testSub{name: "plain"}
		for i, s := range m {
			mustSub(t, tr, s, "$share/g/jobs/+", Options{QoS: 1, ID: uint32(10 + i)})
		}
		mustSub(t, tr, other, "$share/h/jobs/+", Options{QoS: 2})
		mustSub(t, tr, plain, "jobs/+", Options{QoS: 0})
		mustSub(t, tr, m[0], "jobs/+", Options{QoS: 0}) // an ordinary subscription beside its membership

		count := map[Subscriber]int{}
		for range 30 {
			var r Result
			tr.Match([]byte("jobs/1"), nil, &r)
			if len(r.Shared) != 2 || len(r.Subs) != 2 {
				t.Fatalf("got subs %v shared %v, want 2 ordinary and one per group", r.Subs, r.Shared)
			}
			for _, d := range r.Shared {
				count[d.Sub]++
				if d.Sub != other && (d.QoS != 1 || len(d.IDs) != 1) {
					t.Errorf("member delivery %+v lost its options", d)
				}
			}
		}
		if count[other] != 30 || count[m[0]] != 10 || count[m[1]] != 10 || count[m[2]] != 10 {
			t.Errorf("round robin: %v, want 10 each in g and 30 for h", count)
		}

		m[1].busy.Store(true)
		clear(count)
		for range 20 {
			var r Result
			tr.Match([]byte("jobs/2"), nil, &r)
			for _, d := range r.Shared {
				count[d.Sub]++
			}
		}
		if count[m[1]] != 0 || count[m[0]]+count[m[2]] != 20 {
			t.Errorf("busy member picked: %v", count)
		}
		for _, s := range m {
			s.busy.Store(true)
		}
		var r Result
		tr.Match([]byte("jobs/3"), nil, &r)
		if len(r.Shared) != 2 {
			t.Errorf("all busy: got %v, want still one per group", r.Shared)
		}
		for _, s := range m {
			s.busy.Store(false)
		}

		// Leave and join at any time.
		tr.Unsubscribe(m[0], "$share/g/jobs/+")
		late := &testSub{name: "late"}
		mustSub(t, tr, late, "$share/g/jobs/+", Options{})
		clear(count)
		for range 30 {
			tr.Match([]byte("jobs/4"), nil, &r)
			for _, d := range r.Shared {
				count[d.Sub]++
			}
		}
		if count[m[0]] != 0 || count[late] != 10 || count[m[1]] != 10 || count[m[2]] != 10 {
			t.Errorf("after leave and join: %v", count)
		}
		for _, s := range []*testSub{m[1], m[2], late} {
			tr.Unsubscribe(s, "$share/g/jobs/+")
		}
		tr.Match([]byte("jobs/5"), nil, &r)
		if len(r.Shared) != 1 || r.Shared[0].Sub != other {
			t.Errorf("group g emptied: got %v, want only h's member", r.Shared)
		}
	})
}

// Subscribing again to the same filter replaces the subscription
// [MQTT-3.8.4-3] and keeps its place in the delivery order and the round
// robin.
func TestReplaceKeepsPlace(t *testing.T) {
	forConfigs(t, func(t *testing.T, tr *Trie) {
		s := newSubs(4, "s")
		for _, f := range []string{"lit/a", "wild/+", "$share/g/lit/a"} {
			for _, x := range s {
				if mustSub(t, tr, x, f, Options{QoS: 0}) {
					t.Errorf("first Subscribe(%q) reported existed", f)
				}
			}
		}
		n := tr.Count()
		if !mustSub(t, tr, s[1], "lit/a", Options{QoS: 2, ID: 9}) || !mustSub(t, tr, s[1], "wild/+", Options{QoS: 1}) ||
			!mustSub(t, tr, s[2], "$share/g/lit/a", Options{QoS: 2}) {
			t.Error("replacing Subscribe did not report existed")
		}
		if tr.Count() != n {
			t.Errorf("Count %d after replacing, want %d", tr.Count(), n)
		}
		for _, c := range []struct {
			topic string
			qos   byte
		}{{"lit/a", 2}, {"wild/x", 1}} {
			r := matchTwice(t, tr, c.topic, nil)
			for i, d := range r.Subs {
				if d.Sub != s[i] {
					t.Fatalf("%s: order %v, want s0..s3", c.topic, r.Subs)
				}
				if want := byte(0); i == 1 && d.QoS != c.qos || i != 1 && d.QoS != want {
					t.Errorf("%s: %v has QoS %d", c.topic, d.Sub, d.QoS)
				}
			}
		}
		var r Result
		// Leaving keeps the others' order.
		tr.Unsubscribe(s[0], "lit/a")
		if tr.Match([]byte("lit/a"), nil, &r); !slices.EqualFunc(r.Subs, s[1:], func(d Delivery, x *testSub) bool { return d.Sub == x }) {
			t.Errorf("after s0 left: %v, want s1 s2 s3", r.Subs)
		}
		tr.Match([]byte("lit/a"), nil, &r)
		first := slices.Index(s, r.Shared[0].Sub.(*testSub))
		for i := 1; i < 8; i++ {
			tr.Match([]byte("lit/a"), nil, &r)
			k := (first + i) % 4
			if d := r.Shared[0]; d.Sub != s[k] || (k == 2) != (d.QoS == 2) {
				t.Errorf("round robin pick %d: %+v, want %v", i, d, s[k])
			}
		}
	})
}

// Unsubscribe and RemoveAll are exact and leave no empty nodes behind.
func TestRemoveLeavesNothing(t *testing.T) {
	forConfigs(t, func(t *testing.T, tr *Trie) {
		subs := newSubs(5, "s")
		filters := []string{"a", "a/b", "a/b/c", "a/+/c", "a/#", "+/b", "#", "+", "/", "a//b", "$SYS/#",
			"$share/g/a/b", "$share/g/a/+", "$share/h/#", "$share/g/+/+"}
		for _, s := range subs {
			for _, f := range filters {
				mustSub(t, tr, s, f, Options{QoS: 1, ID: 3})
			}
		}
		for _, topic := range []string{"a/b", "a/x/c", "$SYS/x", "/"} {
			matchTwice(t, tr, topic, nil) // fill the cache
		}
		if tr.Count() != len(subs)*len(filters) {
			t.Fatalf("Count = %d, want %d", tr.Count(), len(subs)*len(filters))
		}
		for _, f := range filters {
			if !tr.Unsubscribe(subs[0], f) {
				t.Errorf("Unsubscribe(%q) found nothing", f)
			}
			if tr.Unsubscribe(subs[0], f) {
				t.Errorf("second Unsubscribe(%q) found something", f)
			}
		}
		if tr.Unsubscribe(subs[1], "a/b/c/d") || tr.Unsubscribe(subs[1], "never/+") {
			t.Error("Unsubscribe of a filter never subscribed found something")
		}
		for _, s := range subs[1:] {
			if n := tr.RemoveAll(s); n != len(filters) {
				t.Errorf("RemoveAll = %d, want %d", n, len(filters))
			}
		}
		if tr.RemoveAll(subs[1]) != 0 {
			t.Error("second RemoveAll removed something")
		}
		if n := tr.nodes(); n != 0 || tr.Count() != 0 {
			t.Errorf("after removing all: %d nodes, Count %d", n, tr.Count())
		}
		for _, topic := range []string{"a/b", "a/x/c", "$SYS/x", "/"} {
			if r := matchTwice(t, tr, topic, nil); len(r.Subs)+len(r.Shared) != 0 {
				t.Errorf("%s still matches %v %v", topic, r.Subs, r.Shared)
			}
		}
	})
}

// The cache never returns a result made stale by a Subscribe or Unsubscribe
// that has returned, and holds at most CacheSize topics.
func TestCacheInvalidation(t *testing.T) {
	tr := New(Config{Shards: 4, CacheSize: 64})
	a := &testSub{name: "a"}
	steps := []struct {
		op, filter string
		want       int // deliveries to "x/y/z" afterwards
	}{
		{"sub", "x/y/z", 1}, {"sub", "x/+/z", 1}, {"unsub", "x/y/z", 1}, {"unsub", "x/+/z", 0},
		{"sub", "#", 1}, {"sub", "$share/g/x/#", 2}, {"unsub", "#", 1}, {"sub", "$share/h/x/y/z", 2},
		{"unsub", "$share/g/x/#", 1}, {"unsub", "$share/h/x/y/z", 0}, {"sub", "x/y/#", 1}, {"sub", "other/#", 1},
	}
	for _, st := range steps {
		if st.op == "sub" {
			mustSub(t, tr, a, st.filter, Options{})
		} else {
			tr.Unsubscribe(a, st.filter)
		}
		r := matchTwice(t, tr, "x/y/z", nil)
		if got := len(r.Subs) + len(r.Shared); got != st.want {
			t.Errorf("after %s %s: %d deliveries, want %d", st.op, st.filter, got, st.want)
		}
	}
	var r Result
	for i := range 1000 {
		tr.Match(fmt.Appendf(nil, "x/y/%d", i), nil, &r)
	}
	if n := tr.cached(); n > 64 || n == 0 {
		t.Errorf("cache holds %d topics, want 1..64", n)
	}
}

// A randomized comparison with the naive oracle, with subscribes and
// unsubscribes between matches.
func TestRandomAgainstOracle(t *testing.T) {
	forConfigs(t, func(t *testing.T, tr *Trie) {
		rng := rand.New(rand.NewPCG(1, 2))
		m := newModel()
		subs := newSubs(6, "s")
		steps := 3000
		if raceEnabled {
			steps = 600
		}
		for i := range steps {
			s := subs[rng.IntN(len(subs))]
			f := randomFilter(rng)
			if rng.IntN(3) == 0 {
				tr.Unsubscribe(s, f)
				m.unsubscribe(s, f)
			} else {
				o := Options{QoS: byte(rng.IntN(3)), NoLocal: rng.IntN(4) == 0, RetainAsPublished: rng.IntN(2) == 0, ID: uint32(rng.IntN(3))}
				if _, _, shared := ParseShared(f); shared {
					o.NoLocal = false // a Protocol Error on shared subscriptions [MQTT-3.8.3-4]
				}
				mustSub(t, tr, s, f, o)
				m.subscribe(s, f, o)
			}
			topic := randomTopic(rng)
			from := subs[rng.IntN(len(subs))]
			r := matchTwice(t, tr, topic, from)
			if err := m.match(topic, from).check(r); err != nil {
				t.Fatalf("step %d topic %q: %v", i, topic, err)
			}
		}
		if tr.Count() != m.count() {
			t.Errorf("Count = %d, oracle %d", tr.Count(), m.count())
		}
	})
}

var levels = []string{"a", "b", "", "$SYS"}

func randomTopic(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		parts[i] = levels[rng.IntN(len(levels))]
		if i > 0 && parts[i] == "$SYS" {
			parts[i] = "c"
		}
	}
	if n == 1 && parts[0] == "" {
		return "a" // a topic has at least one character [MQTT-4.7.3-1]
	}
	return strings.Join(parts, "/")
}

func randomFilter(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		switch rng.IntN(6) {
		case 0:
			parts[i] = "+"
		case 1:
			if i == n-1 {
				parts[i] = "#"
				continue
			}
			parts[i] = "a"
		default:
			parts[i] = levels[rng.IntN(len(levels))]
		}
	}
	f := strings.Join(parts, "/")
	if f == "" {
		f = "b" // a filter has at least one character [MQTT-4.7.3-1]
	}
	switch rng.IntN(8) {
	case 0:
		f = "$share/g/" + f
	case 1:
		f = "$share/h/" + f
	}
	return f
}

func TestMatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	forConfigs(t, func(t *testing.T, tr *Trie) {
		subs := newSubs(20, "s")
		for i, s := range subs {
			mustSub(t, tr, s, "t/+/x", Options{QoS: 1, ID: uint32(i + 1)})
			mustSub(t, tr, s, "t/#", Options{QoS: 0, ID: 100, NoLocal: i == 0})
			mustSub(t, tr, s, "$share/g/t/#", Options{ID: 5})
		}
		var r Result
		topic := []byte("t/y/x")
		tr.Match(topic, subs[0], &r)
		if n := testing.AllocsPerRun(200, func() { tr.Match(topic, subs[0], &r) }); n != 0 {
			t.Errorf("Match allocates %v times per run", n)
		}
		if len(r.Subs) != 20 || len(r.Shared) != 1 {
			t.Errorf("got %d deliveries and %d shared", len(r.Subs), len(r.Shared))
		}
	})
}
