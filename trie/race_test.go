package trie

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// TestStorm subscribes and unsubscribes from several goroutines while others
// match, under every configuration; run it with -race. Checks:
//   - matchers: the stable subscriptions (never changed) are reported exactly
//     as the oracle says; a churning subscriber, if reported, has a filter
//     that matches and its own options; the stable shared group yields
//     exactly one member per matching message;
//   - churners: after their own Subscribe returns, a match sees it, and after
//     Unsubscribe or RemoveAll returns, it does not (the cache is never
//     stale, even with concurrent misses filling it);
//   - at the end, with everything quiet, every topic matches exactly.
func TestStorm(t *testing.T) {
	forConfigs(t, func(t *testing.T, tr *Trie) {
		churners, rounds := 4, 200
		if raceEnabled {
			rounds = 80
		}
		stable := newModel()
		st := newSubs(4, "stable")
		stableFilters := []string{"storm/0/x", "storm/+/x", "storm/#", "+/1/x", "#", "storm/2/+", "$SYS/#"}
		for i, s := range st {
			for j, f := range stableFilters {
				if (i+j)%2 == 0 {
					o := Options{QoS: byte((i + j) % 3), ID: uint32(1 + i*10 + j), NoLocal: j == 1}
					mustSub(t, tr, s, f, o)
					stable.subscribe(s, f, o)
				}
			}
		}
		members := st[:2] // the stable members of group "s"
		for _, s := range members {
			mustSub(t, tr, s, "$share/s/storm/+/x", Options{QoS: 1})
		}

		topics := []string{"storm/0/x", "storm/1/x", "storm/2/x", "storm/3/x", "storm/2/y", "storm", "other/1/x", "$SYS/up"}
		churn := newSubs(churners, "churn")  // ordinary filters and membership of "s"
		owners := newSubs(churners, "owner") // each the only member of its own group
		churnFilters := func(k int) []string {
			return []string{fmt.Sprintf("storm/%d/x", k), "storm/+/x", "storm/#", fmt.Sprintf("+/%d/x", k), "#"}
		}
		churnOpts := func(k int) Options { return Options{QoS: byte(k % 3), ID: uint32(1000 + k)} }

		var done atomic.Bool
		var churnWG, matchWG sync.WaitGroup
		errs := make(chan error, 16)
		fail := func(err error) {
			select {
			case errs <- err:
			default:
			}
		}
		for k := range churners {
			churnWG.Add(1)
			go func() {
				defer churnWG.Done()
				c, o := churn[k], owners[k]
				own := fmt.Sprintf("$share/c%d/storm/#", k)
				mine := []byte(fmt.Sprintf("storm/%d/x", k))
				var r Result
				for i := range rounds {
					f := churnFilters(k)[i%5]
					if _, err := tr.Subscribe(c, f, churnOpts(k)); err != nil {
						fail(err)
						return
					}
					tr.Match(mine, nil, &r)
					if d, ok := find(r.Subs, c); !ok || d.QoS != churnOpts(k).QoS || !slices.Equal(d.IDs, []uint32{churnOpts(k).ID}) {
						fail(fmt.Errorf("%s: after Subscribe(%q) match gives %v", c.name, f, r.Subs))
						return
					}
					if _, err := tr.Subscribe(o, own, Options{QoS: 2}); err != nil {
						fail(err)
						return
					}
					tr.Match(mine, nil, &r)
					if _, ok := find(r.Shared, o); !ok {
						fail(fmt.Errorf("%s: after Subscribe(%q) match gives %v", o.name, own, r.Shared))
						return
					}
					tr.Subscribe(c, "$share/s/storm/+/x", Options{QoS: 1})
					if i%7 == 0 {
						tr.RemoveAll(c)
					} else {
						tr.Unsubscribe(c, f)
						tr.Unsubscribe(c, "$share/s/storm/+/x")
					}
					tr.Unsubscribe(o, own)
					tr.Match(mine, nil, &r)
					_, sawC := find(r.Subs, c)
					_, sawO := find(r.Shared, o)
					if sawC || sawO {
						fail(fmt.Errorf("%s: after Unsubscribe match gives %v / %v", c.name, r.Subs, r.Shared))
						return
					}
				}
			}()
		}
		for m := range 2 {
			matchWG.Add(1)
			go func() {
				defer matchWG.Done()
				rng := rand.New(rand.NewPCG(uint64(m), 7))
				var r Result
				for !done.Load() {
					topic := topics[rng.IntN(len(topics))]
					from := st[rng.IntN(len(st))]
					tr.Match([]byte(topic), from, &r)
					if err := checkStorm(&r, stable, topic, from, st, members, churn, owners, churnFilters, churnOpts); err != nil {
						fail(fmt.Errorf("topic %q from %s: %v", topic, from.name, err))
						return
					}
				}
			}()
		}
		churnWG.Wait()
		done.Store(true)
		matchWG.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}

		// Quiet now: every churner was removed; the stable state is exact.
		var r Result
		for _, topic := range topics {
			for _, from := range st {
				tr.Match([]byte(topic), from, &r)
				w := stable.match(topic, from)
				for _, s := range members {
					if MatchFilter("storm/+/x", topic) {
						if w.groups["s"] == nil {
							w.groups["s"] = map[Subscriber]Delivery{}
						}
						w.groups["s"][s] = Delivery{Sub: s, QoS: 1}
					}
				}
				if err := w.check(&r); err != nil {
					t.Errorf("after the storm, topic %q: %v", topic, err)
				}
			}
		}
	})
}

func find(ds []Delivery, s Subscriber) (Delivery, bool) {
	for _, d := range ds {
		if d.Sub == s {
			return d, true
		}
	}
	return Delivery{}, false
}

// checkStorm checks one match made during the storm (see TestStorm).
func checkStorm(r *Result, stable *model, topic string, from *testSub, st, members, churn, owners []*testSub,
	churnFilters func(int) []string, churnOpts func(int) Options) error {
	w := stable.match(topic, from)
	seen := 0
	for _, d := range r.Subs {
		if k := slices.Index(churn, d.Sub.(*testSub)); k >= 0 {
			ok := slices.ContainsFunc(churnFilters(k), func(f string) bool { return MatchFilter(f, topic) })
			// A match reads the lock domains one after the other, so it may
			// see a churner's filter of one round and of the next together.
			o := churnOpts(k)
			if !ok || d.QoS != o.QoS || len(d.IDs) == 0 || slices.ContainsFunc(d.IDs, func(id uint32) bool { return id != o.ID }) {
				return fmt.Errorf("churner delivery %+v does not fit", d)
			}
			continue
		}
		e, ok := w.subs[d.Sub]
		if !ok {
			return fmt.Errorf("unexpected delivery %+v", d)
		}
		if err := sameDelivery(d, e); err != nil {
			return err
		}
		seen++
	}
	if seen != len(w.subs) {
		return fmt.Errorf("got %v, want all of %v", r.Subs, w.subs)
	}
	inS := 0
	for _, d := range r.Shared {
		switch s := d.Sub.(*testSub); {
		case slices.Contains(members, s) || slices.Contains(churn, s):
			inS++
		case slices.Contains(owners, s):
			if !MatchFilter("storm/#", topic) {
				return fmt.Errorf("owner %s picked for %q", s.name, topic)
			}
		default:
			return fmt.Errorf("unexpected shared delivery %+v", d)
		}
	}
	if want := b2i(MatchFilter("storm/+/x", topic)); inS != want {
		return fmt.Errorf("group s delivered %d copies, want %d: %v", inS, want, r.Shared)
	}
	return nil
}
