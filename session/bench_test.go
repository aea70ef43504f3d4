package session

import (
	"fmt"
	"io"
	"log"
	"testing"

	"github.com/midge-mqtt/midge/codec"
)

// benchTransport is a connection that only counts wake-ups: the benchmarks
// measure the session layer (route, enqueue, drain, encode), not sockets.
type benchTransport struct{ wakes int }

func (t *benchTransport) Wake()              { t.wakes++ }
func (t *benchTransport) Close()             {}
func (t *benchTransport) RemoteAddr() string { return "bench" }

func benchBroker() *Broker {
	o := DefaultOptions()
	o.Logger = log.New(io.Discard, "", 0)
	o.ConnectionMessages = false
	return NewBroker(o)
}

// connectClient runs CONNECT (and SUBSCRIBE to filter, if any) through Handle.
func connectClient(tb testing.TB, b *Broker, id string, version byte, filter string, qos byte) *Client {
	c := b.NewClient(&benchTransport{}, nil)
	var out Output
	var p codec.Packet
	p.Type = codec.CONNECT
	p.Connect.ProtocolName = []byte("MQTT")
	p.Connect.ProtocolLevel = version
	p.Connect.CleanStart = true
	p.Connect.ClientID = []byte(id)
	if err := c.Handle(&p, &out); err != nil {
		tb.Fatalf("connect: %v", err)
	}
	if filter != "" {
		p.Reset()
		p.Type, p.PacketID = codec.SUBSCRIBE, 1
		p.Subscriptions = append(p.Subscriptions, codec.Subscription{Filter: []byte(filter), QoS: qos})
		if err := c.Handle(&p, &out); err != nil {
			tb.Fatalf("subscribe: %v", err)
		}
	}
	return c
}

// BenchmarkPublishFanOut: one PUBLISH decoded → matched → enqueued for each
// subscriber → drained and encoded for each. Steady state: 0 allocs/op.
func BenchmarkPublishFanOut(b *testing.B) {
	for _, tc := range []struct {
		subs    int
		version byte
		qos     byte
		payload int
	}{
		{1, codec.Version311, 0, 64},
		{10, codec.Version311, 0, 64},
		{10, codec.Version5, 0, 64},
		{10, codec.Version311, 1, 64},
		{10, codec.Version311, 0, 4096},
	} {
		name := fmt.Sprintf("subs=%d/v%d/qos%d/%dB", tc.subs, tc.version, tc.qos, tc.payload)
		b.Run(name, func(b *testing.B) {
			br := benchBroker()
			subs := make([]*Client, tc.subs)
			for i := range subs {
				subs[i] = connectClient(b, br, fmt.Sprintf("sub%d", i), tc.version, "fleet/+/telemetry", tc.qos)
			}
			pub := connectClient(b, br, "pub", tc.version, "", 0)
			var out Output
			var p codec.Packet
			p.Type, p.QoS, p.PacketID = codec.PUBLISH, tc.qos, 1
			p.Topic = []byte("fleet/site42/telemetry")
			p.Payload = make([]byte, tc.payload)
			var acks codec.Packet
			acks.Type = codec.PUBACK
			b.SetBytes(int64(tc.payload * tc.subs))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := pub.Handle(&p, &out); err != nil {
					b.Fatal(err)
				}
				out.Done()
				for _, s := range subs {
					if _, err := s.Drain(&out, 1<<20); err != nil {
						b.Fatal(err)
					}
					out.Done()
					if tc.qos == 1 { // complete the flow so the window never fills
						acks.PacketID = s.s.nextID
						if err := s.Handle(&acks, &out); err != nil {
							b.Fatal(err)
						}
						out.Done()
					}
				}
			}
		})
	}
}

// TestPublishPathAllocs pins the zero-allocation promise of the publish path
// (route, enqueue, drain, encode) so that a regression fails the tests, not
// only the benchmark numbers.
func TestPublishPathAllocs(t *testing.T) {
	br := benchBroker()
	subs := []*Client{
		connectClient(t, br, "s1", codec.Version311, "a/+", 0),
		connectClient(t, br, "s2", codec.Version5, "a/#", 1),
	}
	pub := connectClient(t, br, "pub", codec.Version311, "", 0)
	var out Output
	var p, ack codec.Packet
	p.Type, p.QoS, p.PacketID = codec.PUBLISH, 1, 7
	p.Topic, p.Payload = []byte("a/b"), []byte("hello")
	ack.Type = codec.PUBACK
	run := func() {
		_ = pub.Handle(&p, &out)
		out.Done()
		for _, s := range subs {
			_, _ = s.Drain(&out, 1<<20)
			out.Done()
		}
		ack.PacketID = subs[1].s.nextID
		_ = subs[1].Handle(&ack, &out)
		out.Done()
	}
	for i := 0; i < 100; i++ { // warm pools, caches and buffers
		run()
	}
	if n := testing.AllocsPerRun(1000, run); n > 0 {
		t.Fatalf("publish path allocates %.1f times per message, want 0", n)
	}
}

// TestAliasedPublishAllocs: giving and reusing outbound topic aliases (a
// subscriber allowing 4, topics churning over 8, so slots are replaced)
// allocates nothing per message once warm.
func TestAliasedPublishAllocs(t *testing.T) {
	br := benchBroker()
	sub := br.NewClient(&benchTransport{}, nil)
	var out Output
	var p codec.Packet
	p.Type = codec.CONNECT
	p.Connect.ProtocolName, p.Connect.ProtocolLevel = []byte("MQTT"), codec.Version5
	p.Connect.CleanStart, p.Connect.ClientID = true, []byte("aliased")
	p.Props.TopicAliasMaximum = 4
	p.Props.Set(codec.PropTopicAliasMaximum)
	if err := sub.Handle(&p, &out); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	p.Type, p.PacketID = codec.SUBSCRIBE, 1
	p.Subscriptions = append(p.Subscriptions, codec.Subscription{Filter: []byte("fleet/#")})
	if err := sub.Handle(&p, &out); err != nil {
		t.Fatal(err)
	}
	out.Done()
	pub := connectClient(t, br, "pub", codec.Version311, "", 0)
	topics := make([][]byte, 8)
	for i := range topics {
		topics[i] = []byte(fmt.Sprintf("fleet/site%d/telemetry/with/a/long/topic", i))
	}
	var msg codec.Packet
	msg.Type, msg.Payload = codec.PUBLISH, []byte("hello")
	n := 0
	run := func() {
		msg.Topic = topics[n%len(topics)]
		n++
		_ = pub.Handle(&msg, &out)
		out.Done()
		_, _ = sub.Drain(&out, 1<<20)
		out.Done()
	}
	for i := 0; i < 100; i++ {
		run()
	}
	if a := testing.AllocsPerRun(1000, run); a > 0 {
		t.Fatalf("aliased publish allocates %.1f times per message, want 0", a)
	}
}
