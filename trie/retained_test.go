package trie

import (
	"fmt"
	"slices"
	"testing"
)

func retainedTopics(r *Retained[int], filter string) []string {
	var out []string
	r.Match(filter, func(topic string, _ int) bool {
		out = append(out, topic)
		return true
	})
	slices.Sort(out)
	return out
}

// The retained store against the shared filter/topic table: a new
// subscription receives the retained messages its filter matches, with the
// '$' rule [MQTT-4.7.2-1] and '#' matching the parent [MQTT-4.7.1-1].
func TestRetainedMatchTable(t *testing.T) {
	for _, c := range matchCases {
		r := NewRetained[int]()
		r.Set(c.topic, 1)
		r.Set("unrelated/topic", 2)
		got := retainedTopics(r, c.filter)
		want := []string(nil)
		if c.match {
			want = []string{c.topic}
		}
		if MatchFilter(c.filter, "unrelated/topic") {
			want = append(want, "unrelated/topic")
			slices.Sort(want)
		}
		if !slices.Equal(got, want) {
			t.Errorf("filter %q over {%q, unrelated/topic}: got %q, want %q (%s)", c.filter, c.topic, got, want, c.why)
		}
	}
}

func TestRetainedSetGetDelete(t *testing.T) {
	r := NewRetained[string]()
	r.Set("a/b", "1")
	r.Set("a/b", "2") // replaces
	r.Set("a", "3")
	r.Set("a/b/c", "4")
	if v, ok := r.Get("a/b"); !ok || v != "2" || r.Len() != 3 {
		t.Errorf("Get(a/b) = %q %v, Len %d; want 2 true 3", v, ok, r.Len())
	}
	if _, ok := r.Get("a/x"); ok {
		t.Error("Get of a missing topic found something")
	}
	if _, ok := r.Get("a/b/c/d"); ok {
		t.Error("Get below a leaf found something")
	}
	// An empty retained payload clears the topic [MQTT-3.3.1-10]: the broker
	// calls Delete.
	if old, ok := r.Delete("a/b"); !ok || old != "2" {
		t.Errorf("Delete(a/b) = %q %v", old, ok)
	}
	if _, ok := r.Delete("a/b"); ok {
		t.Error("second Delete found something")
	}
	if _, ok := r.Get("a/b"); ok || r.Len() != 2 {
		t.Errorf("after Delete: Len %d", r.Len())
	}
	r.Delete("a/b/c")
	r.Delete("a")
	if r.Len() != 0 || r.nodes() != 0 {
		t.Errorf("after deleting all: Len %d, %d nodes", r.Len(), r.nodes())
	}
}

func TestRetainedMatchWildcards(t *testing.T) {
	r := NewRetained[int]()
	for i, topic := range []string{"a", "a/b", "a/b/c", "a/c", "b/b", "/a", "a//b", "$SYS/up", "$SYS/x/y"} {
		r.Set(topic, i)
	}
	cases := []struct {
		filter string
		want   []string
	}{
		{"#", []string{"/a", "a", "a//b", "a/b", "a/b/c", "a/c", "b/b"}}, // [MQTT-4.7.2-1]
		{"a/#", []string{"a", "a//b", "a/b", "a/b/c", "a/c"}},            // [MQTT-4.7.1-1]
		{"a/+", []string{"a/b", "a/c"}},
		{"+/b", []string{"a/b", "b/b"}},
		{"+/+", []string{"/a", "a/b", "a/c", "b/b"}},
		{"a/+/b", []string{"a//b"}},
		{"+", []string{"a"}},
		{"$SYS/#", []string{"$SYS/up", "$SYS/x/y"}},
		{"$SYS/+", []string{"$SYS/up"}},
		{"+/up", nil}, // [MQTT-4.7.2-1]
		{"$share/g/a/+", []string{"a/b", "a/c"}},
		{"z/#", nil},
	}
	for _, c := range cases {
		if got := retainedTopics(r, c.filter); !slices.Equal(got, c.want) {
			t.Errorf("Match(%q) = %q, want %q", c.filter, got, c.want)
		}
	}
}

// fn may change the store while Match runs, and returning false stops.
func TestRetainedMatchCallback(t *testing.T) {
	r := NewRetained[int]()
	for i := range 10 {
		r.Set(fmt.Sprintf("t/%d", i), i)
	}
	calls := 0
	r.Match("t/#", func(topic string, _ int) bool {
		calls++
		r.Delete(topic)
		r.Set("u/"+topic, 1)
		return calls < 4
	})
	if calls != 4 || r.Len() != 10 {
		t.Errorf("calls %d, Len %d; want 4 and 10", calls, r.Len())
	}
}

func TestRetainedConcurrent(t *testing.T) {
	r := NewRetained[int]()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			topic := fmt.Sprintf("c/%d/%d", i%7, i%13)
			r.Set(topic, i)
			if i%3 == 0 {
				r.Delete(topic)
			}
		}
	}()
	for range 200 {
		r.Match("c/+/#", func(topic string, _ int) bool {
			if !MatchFilter("c/+/#", topic) {
				t.Errorf("Match returned %q", topic)
			}
			return true
		})
		r.Get("c/1/1")
	}
	<-done
	n := 0
	r.Match("#", func(string, int) bool { n++; return true })
	if n != r.Len() {
		t.Errorf("Match(#) saw %d topics, Len %d", n, r.Len())
	}
}
