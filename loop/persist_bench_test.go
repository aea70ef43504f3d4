package loop

import (
	"context"
	"fmt"
	"io"
	"log"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/store"
)

// BenchmarkPersistQoS1 measures QoS 1 fan-in to one persistent subscriber
// with the store off, on with persistence_sync always (every PUBACK waits
// for a group-committed sync), and on with interval. b.N × perOp messages
// are published by 16 publishers with 16 in flight each; the subscriber
// acks. Compare msg/s across the three. This Go client (one goroutine per
// connection) is the bottleneck here at ~60k msg/s; `make bench` also
// prints the ratio measured with `midge bench qos1 -persistent`.
func BenchmarkPersistQoS1(b *testing.B) { benchPersist(b, 1) }

// BenchmarkPersistQoS2 is BenchmarkPersistQoS1 at QoS 2: with the store on,
// each step of the subscriber's flow (PUBLISH, PUBREL) and of the
// publishers' (PUBREC, PUBCOMP) waits for the sync of the state it
// announces, so that a crash neither loses nor duplicates a message.
func BenchmarkPersistQoS2(b *testing.B) { benchPersist(b, 2) }

func benchPersist(b *testing.B, qos byte) {
	const perOp = 2000 // messages per op: a short -benchtime still times a real flow
	for _, mode := range []string{"memory", "always", "interval"} {
		b.Run(mode, func(b *testing.B) {
			opts := session.DefaultOptions()
			opts.Logger = log.New(io.Discard, "", 0)
			opts.ConnectionMessages = false
			opts.MaxQueuedMessages = 0
			br := session.NewBroker(opts)
			if mode != "memory" {
				so := store.Options{Sync: store.SyncAlways, OnDurable: br.Durable}
				if mode == "interval" {
					so.Sync, so.Interval = store.SyncInterval, time.Second
				}
				db, err := store.Open(b.TempDir(), so)
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				if _, err := br.AttachStore(db); err != nil {
					b.Fatal(err)
				}
			}
			srv := New(br, Config{Listeners: []string{"127.0.0.1:0"}, Logger: opts.Logger})
			if err := srv.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			addr := srv.Addrs()[0].String()
			ctx := context.Background()

			var got atomic.Int64
			sub := client.New(client.Options{Addr: addr, ClientID: "bench-sub", Version: codec.Version311})
			sub.OnMessage = func(*client.Message) { got.Add(1) }
			if err := sub.Connect(ctx); err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			if _, err := sub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("bench/#"), QoS: qos}); err != nil {
				b.Fatal(err)
			}

			const publishers, window = 16, 16
			pubs := make([]*client.Client, publishers)
			for i := range pubs {
				pubs[i] = client.New(client.Options{Addr: addr, ClientID: fmt.Sprintf("bench-pub-%d", i),
					CleanStart: true, MaxInflight: window})
				if err := pubs[i].Connect(ctx); err != nil {
					b.Fatal(err)
				}
				defer pubs[i].Close()
			}
			payload := make([]byte, 64)
			b.SetBytes(int64(len(payload) * perOp))
			total := b.N * perOp
			b.ResetTimer()
			var wg sync.WaitGroup
			for i, p := range pubs {
				n := total / publishers
				if i < total%publishers {
					n++
				}
				wg.Add(1)
				go func(p *client.Client, n int) {
					defer wg.Done()
					var acked sync.WaitGroup
					m := &client.Message{Topic: []byte("bench/x"), Payload: payload, QoS: qos}
					for k := 0; k < n; k++ {
						acked.Add(1)
						if err := p.PublishAsync(ctx, m, func(error) { acked.Done() }); err != nil {
							acked.Done()
							b.Error(err)
							return
						}
					}
					acked.Wait()
				}(p, n)
			}
			wg.Wait()
			for deadline := time.Now().Add(30 * time.Second); got.Load() < int64(total); {
				if time.Now().After(deadline) {
					b.Fatalf("subscriber got %d of %d", got.Load(), total)
				}
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
