package store

import (
	"sync"
	"testing"
	"time"
)

// TestCommitDelay: a lone submitter never waits for CommitDelay, while
// many submitters at once get fewer, larger commits.
func TestCommitDelay(t *testing.T) {
	t.Run("lone", func(t *testing.T) {
		db := open(t, t.TempDir(), Options{CommitDelay: time.Second})
		defer db.Close()
		b := NewBatch()
		began := time.Now()
		for i := 0; i < 20; i++ {
			b.PutCounter("n", uint64(i))
			commit(t, db, b) // waits until durable
		}
		if took := time.Since(began); took >= time.Second {
			t.Fatalf("20 sequential commits took %v: a lone submitter waited for the commit delay", took)
		}
	})
	commits := func(delay time.Duration) (batches, commits uint64) {
		db := open(t, t.TempDir(), Options{CommitDelay: delay})
		defer db.Close()
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := NewBatch()
				for i := 0; i < 40; i++ {
					b.PutCounter("n", uint64(i))
					seq := db.Submit(b)
					b.Reset()
					for db.Durable() < seq {
						time.Sleep(50 * time.Microsecond)
					}
				}
			}()
		}
		wg.Wait()
		st := db.Stats()
		return st.Batches, st.Commits
	}
	b0, c0 := commits(-1)
	b1, c1 := commits(50 * time.Millisecond)
	t.Logf("16 submitters × 40 batches: %d commits without delay, %d with 50ms", c0, c1)
	if b0 != 640 || b1 != 640 {
		t.Fatalf("batches %d and %d, want 640", b0, b1)
	}
	// With the delay, each round of the 16 submitters is one commit.
	if c1 > 48 {
		t.Errorf("%d commits with a 50ms delay for 40 rounds of 16 submitters: the delay did not group", c1)
	}
}
