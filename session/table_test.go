package session

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func tableSession(id string) *Session {
	return newSession(nil, &reader{info: ClientInfo{ClientID: id}})
}

// TestSessionTable drives the registry's table and a map side by side with
// random puts (new ids and replacements), deletions (of the session held and
// of a stale one for the same id) and lookups, through several growths and
// back down to empty, and checks that they agree after every step and that
// each visits every session once.
func TestSessionTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 19))
	var tab sessionTable
	model := map[string]*Session{}
	ids := make([]string, 5000)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%d", i)
	}
	check := func(step int) {
		if tab.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, tab.len(), len(model))
		}
		seen := 0
		tab.each(func(s *Session) {
			if model[s.ID()] != s {
				t.Fatalf("step %d: each visits %q's %p, not the session held", step, s.ID(), s)
			}
			seen++
		})
		if seen != len(model) {
			t.Fatalf("step %d: each visits %d sessions, want %d", step, seen, len(model))
		}
	}
	for step := range 60000 {
		id := ids[rng.IntN(len(ids))]
		switch op := rng.IntN(10); {
		case op < 5 && step < 40000: // grow, then mostly shrink
			s := tableSession(id)
			tab.put(s)
			model[id] = s
		case op < 8:
			s := model[id]
			if s == nil || rng.IntN(4) == 0 {
				stale := tableSession(id)
				if tab.del(stale) {
					t.Fatalf("step %d: del of a session not held for %q removed it", step, id)
				}
			}
			if s != nil {
				if !tab.del(s) {
					t.Fatalf("step %d: del of %q's session found nothing", step, id)
				}
				delete(model, id)
			}
		default:
			if got := tab.get(id); got != model[id] {
				t.Fatalf("step %d: get(%q) = %p, want %p", step, id, got, model[id])
			}
		}
		if step%997 == 0 {
			check(step)
		}
	}
	for id, s := range model {
		if !tab.del(s) {
			t.Fatalf("del of %q's session found nothing", id)
		}
		delete(model, id)
	}
	check(-1)
	for _, id := range ids {
		if tab.get(id) != nil {
			t.Fatalf("get(%q) after every deletion is not nil", id)
		}
	}
}

// BenchmarkSessionTableGet is the registry's lookup of a connecting client
// among 20,000 sessions.
func BenchmarkSessionTableGet(b *testing.B) {
	var tab sessionTable
	ids := make([]string, 20000)
	for i := range ids {
		ids[i] = fmt.Sprintf("fleet-%06d", i)
		tab.put(tableSession(ids[i]))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if tab.get(ids[i%len(ids)]) == nil {
			b.Fatal("missing")
		}
	}
}
