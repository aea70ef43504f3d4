package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// durableWaiter lets goroutines wait until a sequence number is durable,
// woken by OnDurable.
type durableWaiter struct {
	mu   sync.Mutex
	cond sync.Cond
	seq  uint64
	log  []uint64 // every OnDurable value, in call order
}

func newDurableWaiter() *durableWaiter {
	w := &durableWaiter{}
	w.cond.L = &w.mu
	return w
}

func (w *durableWaiter) onDurable(seq uint64) {
	w.mu.Lock()
	w.seq = seq
	w.log = append(w.log, seq)
	w.mu.Unlock()
	w.cond.Broadcast()
}

func (w *durableWaiter) wait(seq uint64) {
	w.mu.Lock()
	for w.seq < seq {
		w.cond.Wait()
	}
	w.mu.Unlock()
}

// TestGroupCommit: many goroutines submit and wait for durability; all
// become durable, Durable and OnDurable only go up, and the syncs are
// shared: fewer than the batches.
func TestGroupCommit(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			w := newDurableWaiter()
			db := open(t, t.TempDir(), Options{Sync: mode, Interval: 5 * time.Millisecond, OnDurable: w.onDurable})
			const writers, each = 16, 200
			var last atomic.Uint64
			stop := make(chan struct{})
			watched := make(chan error)
			go func() { // Durable never goes down, whoever looks
				var prev uint64
				for {
					d := db.Durable()
					if d < prev {
						watched <- fmt.Errorf("Durable went from %d to %d", prev, d)
						return
					}
					prev = d
					select {
					case <-stop:
						watched <- nil
						return
					default:
					}
				}
			}()
			var wg sync.WaitGroup
			for g := range writers {
				wg.Go(func() {
					b := NewBatch()
					var prev uint64
					for i := range each {
						b.PutQueued(&Queued{ClientID: fmt.Sprint("c", g), Seq: uint64(i), QoS: 1, Msg: Message{Topic: []byte("t"), Payload: make([]byte, 64)}})
						seq := db.Submit(b)
						b.Reset()
						if seq <= prev {
							t.Errorf("Submit returned %d after %d", seq, prev)
						}
						prev = seq
						w.wait(seq)
						if db.Durable() < seq {
							t.Errorf("OnDurable(%d) before Durable() reached it", seq)
						}
						if seq > last.Load() {
							last.Store(seq)
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			if err := <-watched; err != nil {
				t.Fatal(err)
			}
			st := db.Stats()
			if st.Batches != writers*each {
				t.Fatalf("Stats.Batches = %d, want %d", st.Batches, writers*each)
			}
			if db.Durable() != writers*each {
				t.Fatalf("Durable = %d, want %d", db.Durable(), writers*each)
			}
			w.mu.Lock()
			for i := 1; i < len(w.log); i++ {
				if w.log[i] <= w.log[i-1] {
					t.Fatalf("OnDurable(%d) after OnDurable(%d)", w.log[i], w.log[i-1])
				}
			}
			w.mu.Unlock()
			t.Logf("%d batches, %d commits, %d syncs", st.Batches, st.Commits, st.Syncs)
			if st.Commits >= st.Batches {
				t.Fatalf("%d commits for %d batches: no grouping", st.Commits, st.Batches)
			}
			if mode == SyncAlways && st.Syncs != st.Commits {
				t.Fatalf("SyncAlways: %d syncs for %d commits", st.Syncs, st.Commits)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			ro := open(t, db.dir, Options{ReadOnly: true})
			defer ro.Close()
			got, _ := load(t, ro)
			if len(got.Queued) != writers*each {
				t.Fatalf("%d queued after reopen, want %d", len(got.Queued), writers*each)
			}
		})
	}
}

// TestBatchAtomic: a reader never sees part of a batch. Each batch writes
// ten records of one generation; every Load, taken while batches are being
// committed, sees all ten or none of each generation.
func TestBatchAtomic(t *testing.T) {
	db := open(t, t.TempDir(), Options{})
	defer db.Close()
	const gens, per = 200, 10
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := NewBatch()
		for g := range gens {
			for i := range per {
				b.PutRetained(&Message{Topic: fmt.Appendf(nil, "g%03d/%d", g, i), Payload: []byte("x")})
			}
			if g > 0 { // and removes the previous generation
				for i := range per {
					b.DeleteRetained(fmt.Appendf(nil, "g%03d/%d", g-1, i))
				}
			}
			db.Submit(b)
			b.Reset()
		}
	}()
	check := func() {
		counts := map[string]int{}
		if _, err := db.Load(Visitor{Retained: func(m *Message) { counts[string(m.Topic[:4])]++ }}); err != nil {
			t.Fatal(err)
		}
		if len(counts) > 1 {
			t.Fatalf("two generations visible: %v", counts)
		}
		for g, n := range counts {
			if n != per {
				t.Fatalf("generation %s has %d of %d records", g, n, per)
			}
		}
	}
	for {
		select {
		case <-done:
			db.Close()
			db = open(t, db.dir, Options{})
			defer db.Close() // the deferred Close above is the first DB's: close this one before TempDir's cleanup
			check()
			return
		default:
			check()
		}
	}
}

// TestSubmitAfterClose: Close commits what was submitted; a later Submit
// is dropped and returns 0, and a second Close is an error.
func TestSubmitAfterClose(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir, Options{})
	b := NewBatch()
	b.PutSession(&Session{ClientID: "x", Version: 5})
	seq := db.Submit(b)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db.Durable() != seq {
		t.Fatalf("Durable %d after Close, want %d", db.Durable(), seq)
	}
	if s := db.Submit(b); s != 0 {
		t.Fatalf("Submit after Close = %d, want 0", s)
	}
	if db.Close() == nil {
		t.Fatal("second Close: no error")
	}
	db = open(t, dir, Options{})
	defer db.Close()
	if got, _ := load(t, db); len(got.Sessions) != 1 {
		t.Fatalf("sessions after reopen: %+v", got.Sessions)
	}
}

// TestBackPressure: with a tiny MaxPending, Submits from many goroutines
// still all complete (they wait for the committer, never forever).
func TestBackPressure(t *testing.T) {
	w := newDurableWaiter()
	db := open(t, t.TempDir(), Options{MaxPending: 256, OnDurable: w.onDurable})
	defer db.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			b := NewBatch()
			for i := range 100 {
				b.PutQueued(&Queued{ClientID: fmt.Sprint(g), Seq: uint64(i), Msg: Message{Payload: make([]byte, 200)}})
				db.Submit(b)
				b.Reset()
			}
		})
	}
	wg.Wait()
	w.wait(800)
}

// TestSyncInterval: with SyncInterval a batch is durable once written, and
// the log is synced every Interval, not per commit.
func TestSyncInterval(t *testing.T) {
	db := open(t, t.TempDir(), Options{Sync: SyncInterval, Interval: 5 * time.Millisecond})
	defer db.Close()
	b := NewBatch()
	b.PutRetained(&Message{Topic: []byte("t")})
	commit(t, db, b)
	deadline := time.Now().Add(10 * time.Second)
	for db.Stats().Syncs < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: no periodic sync", db.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if st := db.Stats(); st.Commits != 1 {
		t.Fatalf("stats %+v, want 1 commit", st)
	}
}

// TestSyncEvery: autosave_on_changes. With SyncInterval and SyncEvery the
// log is synced once that many changes are written, and not by time.
func TestSyncEvery(t *testing.T) {
	db := open(t, t.TempDir(), Options{Sync: SyncInterval, Interval: time.Millisecond, SyncEvery: 3})
	defer db.Close()
	for i := 0; i < 5; i++ {
		b := NewBatch()
		b.PutRetained(&Message{Topic: []byte{'t', byte('0' + i)}})
		commit(t, db, b)
		want := uint64((i + 1) / 3)
		if st := db.Stats(); st.Syncs != want {
			t.Fatalf("after %d changes: %d syncs, want %d (%+v)", i+1, st.Syncs, want, st)
		}
	}
	time.Sleep(20 * time.Millisecond) // 20 Intervals: no sync by time
	if st := db.Stats(); st.Syncs != 1 {
		t.Fatalf("syncs by time with SyncEvery: %+v", st)
	}
}
