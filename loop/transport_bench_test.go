package loop

import (
	"io"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// BenchmarkTransportPubSub sends QoS 0 messages (64-byte payload) from one
// publisher to one subscriber through each kind of listener; ns/op is per
// message, end to end (publisher write to subscriber read).
func BenchmarkTransportPubSub(b *testing.B) {
	for _, tr := range transports {
		tr := tr
		b.Run(tr.name, func(b *testing.B) {
			opts := session.DefaultOptions()
			opts.MaxQueuedMessages = 0 // no QoS 0 drops: every message is counted
			opts.ConnectionMessages = false
			tb := startTransport(b, &tr, &opts, nil)
			sub := tb.dialTransport(b, &tr, codec.Version311)
			sub.connect(connectPacket(codec.Version311, "bsub", true))
			sub.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
				Subscriptions: []codec.Subscription{{Filter: []byte("bench/#")}}})
			sub.expect(codec.SUBACK)
			pub := tb.dialTransport(b, &tr, codec.Version311)
			pub.connect(connectPacket(codec.Version311, "bpub", true))
			frame := (&codec.Packet{Type: codec.PUBLISH, Topic: []byte("bench/t"), Payload: make([]byte, 64)}).Encode(nil, codec.Version311)
			const batch = 64 // messages per write, as a busy client's buffer holds
			var chunk []byte
			for i := 0; i < batch; i++ {
				chunk = append(chunk, frame...)
			}
			b.SetBytes(int64(len(frame)))
			b.ResetTimer()
			errc := make(chan error, 1)
			go func() {
				for sent := 0; sent < b.N; sent += batch {
					n := min(batch, b.N-sent)
					if _, err := pub.c.Write(chunk[:n*len(frame)]); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			_ = sub.c.SetReadDeadline(time.Now().Add(time.Minute))
			want := int64(b.N) * int64(len(frame))
			if _, err := io.CopyN(io.Discard, sub.c, want); err != nil {
				b.Fatalf("subscriber read: %v", err)
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
