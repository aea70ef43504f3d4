package loop

import (
	"fmt"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// BenchmarkTopicAliasOut: QoS 0 messages (64-byte payloads) on 8 long
// topics (about 100 bytes each), round robin, from one publisher to one v5
// subscriber that allows 10 topic aliases or none. Reports the subscriber's
// msgs/s and the bytes on the wire per message it receives.
func BenchmarkTopicAliasOut(b *testing.B) {
	for _, aliases := range []uint16{0, 10} {
		b.Run(fmt.Sprintf("aliases=%d", aliases), func(b *testing.B) {
			opts := session.DefaultOptions()
			opts.MaxQueuedMessages = 0 // no QoS 0 drops: every message is counted
			opts.ConnectionMessages = false
			tb := startBroker(b, &opts)
			sub := tb.raw(b, codec.Version5)
			cp := connectPacket(codec.Version5, "asub", true)
			if aliases > 0 {
				cp.Props.TopicAliasMaximum = aliases
				cp.Props.Set(codec.PropTopicAliasMaximum)
			}
			sub.connect(cp)
			sub.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
				Subscriptions: []codec.Subscription{{Filter: []byte("factory/#")}}})
			sub.expect(codec.SUBACK)
			pub := tb.raw(b, codec.Version311)
			pub.connect(connectPacket(codec.Version311, "apub", true))
			const batch = 64
			var chunk []byte
			for i := 0; i < batch; i++ {
				topic := fmt.Sprintf("factory/building-north/floor-03/line-%02d/station-0042/sensor/temperature/celsius/raw", i%8)
				chunk = (&codec.Packet{Type: codec.PUBLISH, Topic: []byte(topic), Payload: make([]byte, 64)}).Encode(chunk, codec.Version311)
			}
			b.ResetTimer()
			errc := make(chan error, 1)
			go func() {
				for sent := 0; sent < b.N; sent += batch {
					n := min(batch, b.N-sent)
					end := n * (len(chunk) / batch)
					if _, err := pub.c.Write(chunk[:end]); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			_ = sub.c.SetReadDeadline(time.Now().Add(time.Minute))
			buf := make([]byte, 256<<10)
			var pending []byte
			got, wire := 0, 0
			for got < b.N {
				n, err := sub.c.Read(buf)
				if err != nil {
					b.Fatalf("subscriber read after %d messages: %v", got, err)
				}
				wire += n
				pending = append(pending, buf[:n]...)
				for {
					size, err := codec.FrameSize(pending, 0)
					if err != nil || len(pending) < size {
						break
					}
					pending = pending[size:]
					got++
				}
				if len(pending) == 0 {
					pending = pending[:0:0]
				}
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(wire)/float64(b.N), "wireB/msg")
		})
	}
}
