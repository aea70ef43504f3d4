package trie

import (
	"fmt"
	"slices"
	"testing"
)

type recorder struct{ events []string }

func (r *recorder) Subscription(s Subscriber, filter string, added bool) {
	r.events = append(r.events, fmt.Sprintf("%v %s %v", s.(*testSub).name, filter, added))
}

// The observer hears each subscription added or removed once, RemoveAll
// included, and not a replaced one [MQTT-3.8.4-3].
func TestObserver(t *testing.T) {
	tr := New(Config{CacheSize: 64})
	var rec recorder
	tr.SetObserver(&rec)
	a, b := &testSub{name: "1"}, &testSub{name: "2"}
	steps := []func(){
		func() { tr.Subscribe(a, "x/y", Options{}) },
		func() { tr.Subscribe(a, "x/y", Options{QoS: 1}) }, // replaced: no event
		func() { tr.Subscribe(a, "x/#", Options{}) },
		func() { tr.Subscribe(b, "$share/g/x/+", Options{}) },
		func() { tr.Unsubscribe(a, "x/y") },
		func() { tr.Unsubscribe(a, "nothing") },
		func() { tr.RemoveAll(a); tr.RemoveAll(b) },
	}
	for _, f := range steps {
		f()
	}
	want := []string{"1 x/y true", "1 x/# true", "2 $share/g/x/+ true", "1 x/y false", "1 x/# false", "2 $share/g/x/+ false"}
	if !slices.Equal(rec.events, want) {
		t.Fatalf("events %q\nwant %q", rec.events, want)
	}
}

// PickShared picks round robin among the members skip lets through, on
// literal and wildcard filters, and finds nothing for an unknown group.
func TestPickShared(t *testing.T) {
	tr := New(Config{})
	local, remote := []*testSub{{name: "1"}, {name: "2"}}, &testSub{name: "9"}
	for _, f := range []string{"$share/g/a/b", "$share/g/a/+"} {
		tr.Subscribe(local[0], f, Options{QoS: 1})
		tr.Subscribe(remote, f, Options{QoS: 2})
		tr.Subscribe(local[1], f, Options{QoS: 1})
		skip := func(s Subscriber) bool { return s == Subscriber(remote) }
		seen := map[string]int{}
		for range 10 {
			d, ok := tr.PickShared(f, skip)
			if !ok {
				t.Fatalf("%s: no pick", f)
			}
			seen[d.Sub.(*testSub).name]++
		}
		if seen["1"] != 5 || seen["2"] != 5 || seen["9"] != 0 {
			t.Fatalf("%s: picks %v", f, seen)
		}
		if _, ok := tr.PickShared("$share/other/a/b", skip); ok {
			t.Fatal("picked from an unknown group")
		}
	}
}
