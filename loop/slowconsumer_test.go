package loop

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TestSlowConsumerV3: a subscriber whose socket is never read fills its
// socket buffers, then its bounded queue (max_queued_messages); what does
// not fit is dropped and counted, while a subscriber that reads still gets
// every message and the broker's heap stays bounded.
func TestSlowConsumerV3(t *testing.T) {
	const (
		payloadSize = 4 << 10
		total       = 8000 // 32 MiB of payload to each subscriber
		batch       = 50   // below the queue bound, so the reader never overflows
		heapBound   = 24 << 20
	)
	opts := session.DefaultOptions()
	opts.MaxQueuedMessages = 100
	tb := startBroker(t, &opts)

	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			topic := fmt.Sprintf("slow/%d", qos)
			stuck, _ := tb.v3Connect(t, codec.Version311, fmt.Sprintf("stuck-%d", qos), true)
			stuck.subscribe(1, topic, qos) // and never reads again
			fast, _ := tb.v3Connect(t, codec.Version311, fmt.Sprintf("fast-%d", qos), true)
			fast.subscribe(1, topic, qos)
			pub, _ := tb.v3Connect(t, codec.Version311, fmt.Sprintf("pub-%d", qos), true)

			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			dropped := tb.Broker.Stats.PublishDropped.Load()
			payload := strings.Repeat("x", payloadSize-8)
			var peak uint64
			began := time.Now()
			for i := 0; i < total; i += batch {
				// The publisher is paced by what the fast subscriber has
				// read, never by the stuck one.
				for k := i; k < i+batch; k++ {
					pub.publish(topic, fmt.Sprintf("%08d", k)+payload, qos, uint16(k%60000+1), false)
				}
				for k := i; k < i+batch; k++ {
					p := fast.expect(codec.PUBLISH)
					if got := string(p.Payload[:8]); got != fmt.Sprintf("%08d", k) || p.QoS != qos {
						t.Fatalf("fast subscriber: got #%s qos %d, want #%08d qos %d", got, p.QoS, k, qos)
					}
					fast.ack(p)
				}
				if i%(total/8) == 0 {
					runtime.GC()
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapAlloc)
				}
			}
			took := time.Since(began)
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			peak = max(peak, after.HeapAlloc)
			d := tb.Broker.Stats.PublishDropped.Load() - dropped
			t.Logf("%d messages of %d B in %v; dropped for the stuck subscriber: %d; heap %d MiB before, peak %d MiB",
				total, payloadSize, took, d, before.HeapAlloc>>20, peak>>20)
			// The stuck subscriber holds at most its queue, the broker's
			// backlog per connection and the kernel's socket buffers: most
			// of the 32 MiB must have been dropped.
			if d < total/2 {
				t.Fatalf("dropped %d of %d for the stuck subscriber, want most", d, total)
			}
			if peak > before.HeapAlloc+heapBound {
				t.Fatalf("heap grew from %d to %d MiB, bound %d MiB", before.HeapAlloc>>20, peak>>20, heapBound>>20)
			}
			fast.expectQuiet()
		})
	}
}
