package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSubmitDurable measures the broker's QoS 1 path with one persistent
// subscriber: each op is one small batch (the queued message, 64 B payload,
// and the delete of the one acknowledged before it) submitted by one of P
// publishers, each waiting for durability (its PUBACK) before the next.
// Reports throughput and Submit→Durable latency percentiles.
//
//	go test -run '^$' -bench SubmitDurable -benchtime 3s ./store
func BenchmarkSubmitDurable(b *testing.B) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval} {
		for _, pubs := range []int{1, 16, 64} {
			name := fmt.Sprintf("sync=%s/publishers=%d", map[SyncMode]string{SyncAlways: "always", SyncInterval: "interval"}[mode], pubs)
			b.Run(name, func(b *testing.B) { benchSubmit(b, mode, pubs) })
		}
	}
}

func benchSubmit(b *testing.B, mode SyncMode, pubs int) {
	w := newDurableWaiter()
	db, err := Open(b.TempDir(), Options{Sync: mode, Interval: 100 * time.Millisecond, OnDurable: func(seq uint64) {
		w.mu.Lock()
		w.seq = seq
		w.mu.Unlock()
		w.cond.Broadcast()
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var next atomic.Int64
	lat := make([][]time.Duration, pubs)
	payload := make([]byte, 64)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for p := range pubs {
		wg.Go(func() {
			batch := NewBatch()
			client := fmt.Sprint("sub", p)
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				batch.PutQueued(&Queued{ClientID: client, Seq: uint64(n), QoS: 1,
					Msg: Message{Topic: []byte("bench/topic"), Payload: payload, QoS: 1}})
				if n > 1 {
					batch.DeleteQueued(client, uint64(n-1))
				}
				t0 := time.Now()
				seq := db.Submit(batch)
				batch.Reset()
				w.wait(seq)
				lat[p] = append(lat[p], time.Since(t0))
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))]) / 1e3 }
	st := db.Stats()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(float64(st.Batches)/float64(max(st.Commits, 1)), "batches/commit")
}
