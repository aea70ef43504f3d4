package loop

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// TestBackPressureQoS0Flood: publishers flooding QoS 0 as fast as their
// sockets take it, at one subscriber that reads slowly (but keeps reading,
// so it is not stuck): no message is lost, each publisher's arrive in order
// [MQTT-4.6.0-6], and the broker's heap stays far below what was sent. The
// publishers are held back by TCP itself: the broker stops reading their
// sockets until the subscriber's queue drains, so their excess waits in the
// kernel, not in the broker (and is never dropped). Before, the broker read
// on into its own buffers and dropped the overflow.
func TestBackPressureQoS0Flood(t *testing.T) {
	const (
		payloadSize = 512
		sent        = 16 << 20 // bytes of payload, over all publishers
		heapBound   = 8 << 20  // half: its queue, a socket backlog, read buffers (4–6 MiB seen)
	)
	for _, publishers := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d-to-1", publishers), func(t *testing.T) {
			tb := startBroker(t, nil)
			sub, _ := tb.v3Connect(t, codec.Version311, "slow-reader", true)
			sub.subscribe(1, "flood/#", 0)
			perPub := sent / payloadSize / publishers

			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			var peak atomic.Uint64
			stopSampling := make(chan struct{})
			sampled := make(chan struct{})
			go func() { // the live heap while it flows (after a GC: garbage depends on its timing)
				defer close(sampled)
				for {
					select {
					case <-stopSampling:
						return
					case <-time.After(100 * time.Millisecond):
					}
					runtime.GC()
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					if ms.HeapAlloc > peak.Load() {
						peak.Store(ms.HeapAlloc)
					}
				}
			}()
			dropped := tb.Broker.Stats.PublishDropped.Load()

			var wg sync.WaitGroup
			errs := make(chan error, publishers)
			for p := 0; p < publishers; p++ {
				pub, _ := tb.v3Connect(t, codec.Version311, fmt.Sprintf("flooder-%d", p), true)
				wg.Add(1)
				go func() { // as fast as the socket takes it, 64 frames per write
					defer wg.Done()
					pad := strings.Repeat("x", payloadSize-8)
					var frames []byte
					for k := 0; k < perPub; k++ {
						payload := binary.BigEndian.AppendUint64(nil, uint64(k))
						frames = (&codec.Packet{Type: codec.PUBLISH, Topic: []byte(fmt.Sprintf("flood/%d", p)),
							Payload: append(payload, pad...)}).Encode(frames, codec.Version311)
						if k%64 == 63 || k == perPub-1 {
							_ = pub.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
							if _, err := pub.c.Write(frames); err != nil {
								errs <- fmt.Errorf("publisher %d after %d messages: %w", p, k, err)
								return
							}
							frames = frames[:0]
						}
					}
				}()
			}

			// The slow reader: 8 KiB at a time, with a pause after each read.
			next := make([]uint64, publishers)
			got, buf, tmp := 0, []byte(nil), make([]byte, 8<<10)
			var dec codec.Decoder
			dec.Version = codec.Version311
			var pkt codec.Packet
			began := time.Now()
			for got < perPub*publishers {
				_ = sub.c.SetReadDeadline(time.Now().Add(v3Wait))
				n, err := sub.c.Read(tmp)
				if err != nil {
					t.Fatalf("subscriber after %d of %d messages (%d dropped): %v", got, perPub*publishers,
						tb.Broker.Stats.PublishDropped.Load()-dropped, err)
				}
				buf = append(buf, tmp[:n]...)
				for {
					total, err := codec.FrameSize(buf, 0)
					if err != nil || len(buf) < total {
						break
					}
					if _, err := dec.Decode(buf[:total], &pkt); err != nil || pkt.Type != codec.PUBLISH {
						t.Fatalf("subscriber: %v %v", pkt.Type, err)
					}
					p := int(pkt.Topic[len(pkt.Topic)-1] - '0') // flood/<digit>
					if k := binary.BigEndian.Uint64(pkt.Payload); k != next[p] {
						t.Fatalf("publisher %d: got message %d, want %d (lost or reordered)", p, k, next[p])
					}
					next[p]++
					got++
					buf = buf[total:]
				}
				buf = append([]byte(nil), buf...)
				time.Sleep(200 * time.Microsecond)
			}
			took := time.Since(began)
			wg.Wait()
			close(stopSampling)
			<-sampled
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			if d := tb.Broker.Stats.PublishDropped.Load() - dropped; d != 0 {
				t.Fatalf("%d messages dropped", d)
			}
			grew := int64(peak.Load()) - int64(before.HeapAlloc)
			t.Logf("%d messages of %d B in %v (%.0f msg/s); live heap %d MiB before, grew at most %.1f MiB",
				got, payloadSize, took, float64(got)/took.Seconds(), before.HeapAlloc>>20, float64(grew)/(1<<20))
			if grew > heapBound {
				t.Fatalf("live heap grew by %d MiB while %d MiB were sent: the excess waited in the broker", grew>>20, sent>>20)
			}
			sub.expectQuiet()
		})
	}
}
