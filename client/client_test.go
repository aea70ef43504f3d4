package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// received is a copy of a delivered message that outlives OnMessage.
type received struct {
	topic, payload string
	qos            byte
	retain         bool
	props          codec.Properties
}

// dial connects a client to addr, collecting its messages on the returned channel.
func dial(t *testing.T, addr string, o Options) (*Client, chan received) {
	t.Helper()
	o.Addr = addr
	c := New(o)
	ch := make(chan received, 100)
	c.OnMessage = func(m *Message) {
		r := received{topic: string(m.Topic), payload: string(m.Payload), qos: m.QoS, retain: m.Retain}
		if m.Props != nil {
			r.props = copyProps(m.Props)
		}
		ch <- r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s: %v", o.ClientID, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, ch
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func expect(t *testing.T, ch chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return received{}
}

func expectNone(t *testing.T, ch chan received, wait time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected message %+v", r)
	case <-time.After(wait):
	}
}

func sub(t *testing.T, c *Client, filter string, qos byte) {
	t.Helper()
	codes, err := c.Subscribe(ctx5(t), nil, codec.Subscription{Filter: []byte(filter), QoS: qos})
	if err != nil || len(codes) != 1 || codes[0] != qos {
		t.Fatalf("subscribe %s: codes %v err %v", filter, codes, err)
	}
}

var versions = []struct {
	name string
	v    byte
}{{"3.1", codec.Version31}, {"3.1.1", codec.Version311}, {"5.0", codec.Version5}}

// TestPublishQoS sends every QoS at every protocol level, with text, empty
// and binary payloads, and checks each arrives once at the granted QoS.
func TestPublishQoS(t *testing.T) {
	addr := startBroker(t)
	payloads := []string{"hello", "", "\x00\xff\x01binary\n"}
	for _, ver := range versions {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("v%s/qos%d", ver.name, qos), func(t *testing.T) {
				id := fmt.Sprintf("q%d-%d", ver.v, qos)
				s, ch := dial(t, addr, Options{Version: ver.v, ClientID: "s" + id, CleanStart: true})
				sub(t, s, "t/"+id, 2)
				p, _ := dial(t, addr, Options{Version: ver.v, ClientID: "p" + id, CleanStart: true})
				for _, pl := range payloads {
					if err := p.Publish(ctx5(t), &Message{Topic: []byte("t/" + id), Payload: []byte(pl), QoS: qos}); err != nil {
						t.Fatal(err)
					}
					r := expect(t, ch)
					if r.topic != "t/"+id || r.payload != pl || r.qos != qos {
						t.Fatalf("got %+v, want payload %q qos %d", r, pl, qos)
					}
				}
				expectNone(t, ch, 100*time.Millisecond) // QoS 2: exactly once [MQTT-4.3.3-10]
				if p.Inflight() != 0 {
					t.Fatalf("inflight %d after all acks", p.Inflight())
				}
				if err := p.Disconnect(codec.Success, nil); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestRetained stores a retained message, sees it flagged on a new
// subscription, then clears it with an empty payload [MQTT-3.3.1-10].
func TestRetained(t *testing.T) {
	addr := startBroker(t)
	p, _ := dial(t, addr, Options{ClientID: "p", CleanStart: true})
	if err := p.Publish(ctx5(t), &Message{Topic: []byte("r/1"), Payload: []byte("kept"), QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	s, ch := dial(t, addr, Options{ClientID: "s", CleanStart: true})
	sub(t, s, "r/#", 1)
	if r := expect(t, ch); r.payload != "kept" || !r.retain {
		t.Fatalf("retained: got %+v", r)
	}
	if err := p.Publish(ctx5(t), &Message{Topic: []byte("r/1"), QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	expect(t, ch) // the live copy of the clearing message
	s2, ch2 := dial(t, addr, Options{ClientID: "s2", CleanStart: true})
	sub(t, s2, "r/#", 1)
	expectNone(t, ch2, 200*time.Millisecond)
}

// TestWill drops connections without DISCONNECT (and, in v5, disconnects
// with reason 0x04) and expects the will [MQTT-3.1.2-8].
func TestWill(t *testing.T) {
	addr := startBroker(t)
	s, ch := dial(t, addr, Options{Version: codec.Version5, ClientID: "s", CleanStart: true})
	sub(t, s, "will/#", 2)
	cases := []struct {
		name string
		v    byte
		end  func(c *Client) error
	}{
		{"3.1.1 dropped", codec.Version311, func(c *Client) error { return c.Close() }},
		{"5.0 dropped", codec.Version5, func(c *Client) error { return c.Close() }},
		{"5.0 disconnect with will", codec.Version5, func(c *Client) error { return c.Disconnect(codec.DisconnectWithWill, nil) }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprintf("will/%d", i)
			props := &codec.Properties{ContentType: []byte("text/plain")}
			props.Set(codec.PropContentType)
			w, _ := dial(t, addr, Options{Version: tc.v, ClientID: "w" + topic, CleanStart: true,
				Will: &Message{Topic: []byte(topic), Payload: []byte("gone"), QoS: 1, Props: props}})
			if err := tc.end(w); err != nil {
				t.Fatal(err)
			}
			r := expect(t, ch)
			if r.topic != topic || r.payload != "gone" {
				t.Fatalf("will: got %+v", r)
			}
			if tc.v == codec.Version5 && string(r.props.ContentType) != "text/plain" {
				t.Fatalf("will properties lost: %+v", r.props)
			}
		})
	}
	// A normal DISCONNECT discards the will [MQTT-3.14.4-3].
	w, _ := dial(t, addr, Options{ClientID: "quiet", CleanStart: true, Will: &Message{Topic: []byte("will/x"), Payload: []byte("no")}})
	w.Disconnect(codec.Success, nil)
	expectNone(t, ch, 300*time.Millisecond)
}

// TestPropertiesV5 round-trips PUBLISH properties and a subscription
// identifier through the broker [MQTT-3.3.2-18] [MQTT-3.3.4-3].
func TestPropertiesV5(t *testing.T) {
	addr := startBroker(t)
	s, ch := dial(t, addr, Options{Version: codec.Version5, ClientID: "s", CleanStart: true})
	sp := &codec.Properties{SubscriptionIDs: []uint32{42}}
	if _, err := s.Subscribe(ctx5(t), sp, codec.Subscription{Filter: []byte("p/+"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	props := &codec.Properties{
		ContentType: []byte("application/json"), ResponseTopic: []byte("reply/1"),
		CorrelationData: []byte{0, 1, 2}, MessageExpiry: 60, PayloadFormat: 1,
		User: []codec.UserProperty{{Key: []byte("k"), Value: []byte("v1")}, {Key: []byte("k"), Value: []byte("v2")}},
	}
	props.Set(codec.PropContentType)
	props.Set(codec.PropResponseTopic)
	props.Set(codec.PropCorrelationData)
	props.Set(codec.PropMessageExpiry)
	props.Set(codec.PropPayloadFormat)
	p, pch := dial(t, addr, Options{Version: codec.Version5, ClientID: "p", CleanStart: true})
	if err := p.Publish(ctx5(t), &Message{Topic: []byte("p/a"), Payload: []byte(`{}`), QoS: 1, Props: props}); err != nil {
		t.Fatal(err)
	}
	r := expect(t, ch).props
	if string(r.ContentType) != "application/json" || string(r.ResponseTopic) != "reply/1" ||
		!bytes.Equal(r.CorrelationData, []byte{0, 1, 2}) || r.PayloadFormat != 1 || !r.Has(codec.PropMessageExpiry) ||
		len(r.User) != 2 || string(r.User[1].Value) != "v2" || len(r.SubscriptionIDs) != 1 || r.SubscriptionIDs[0] != 42 {
		t.Fatalf("properties: %+v", r)
	}
	// No Local: a client's own messages do not come back [MQTT-3.8.3-3].
	if _, err := p.Subscribe(ctx5(t), nil, codec.Subscription{Filter: []byte("nl"), QoS: 1, NoLocal: true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx5(t), &Message{Topic: []byte("nl"), Payload: []byte("x"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	expectNone(t, pch, 200*time.Millisecond)
	if codes, err := s.Unsubscribe(ctx5(t), nil, []byte("p/+")); err != nil || len(codes) != 1 || codes[0] != codec.Success {
		t.Fatalf("unsubscribe: %v %v", codes, err)
	}
	p.Publish(ctx5(t), &Message{Topic: []byte("p/a"), Payload: []byte("after"), QoS: 1})
	expectNone(t, ch, 200*time.Millisecond)
}

// TestSessionResume keeps a v5 session (session expiry) across a
// disconnect and receives what was queued meanwhile [MQTT-3.1.2-5].
func TestSessionResume(t *testing.T) {
	addr := startBroker(t)
	o := Options{Version: codec.Version5, ClientID: "persist", CleanStart: true}
	o.Props.SessionExpiry = 60
	o.Props.Set(codec.PropSessionExpiry)
	s, _ := dial(t, addr, o)
	sub(t, s, "q/#", 1)
	s.Disconnect(codec.Success, nil)
	p, _ := dial(t, addr, Options{ClientID: "p", CleanStart: true})
	p.Publish(ctx5(t), &Message{Topic: []byte("q/1"), Payload: []byte("queued"), QoS: 1})
	o.CleanStart = false
	s2, ch := dial(t, addr, o)
	if ack := s2.Connack(); !ack.SessionPresent {
		t.Fatal("session present not set on resume")
	}
	if r := expect(t, ch); r.payload != "queued" {
		t.Fatalf("got %+v", r)
	}
}

// proxy forwards one TCP connection at a time to a broker; hold stops the
// server-to-client direction so acks never arrive.
type proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	held   bool
	conns  []net.Conn
	target string
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.drop() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go io.Copy(b, c)
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := b.Read(buf)
					p.mu.Lock()
					held := p.held
					p.mu.Unlock()
					if err != nil {
						c.Close()
						return
					}
					if !held {
						c.Write(buf[:n])
					}
				}
			}()
		}
	}()
	return p
}

func (p *proxy) hold(on bool) { p.mu.Lock(); p.held = on; p.mu.Unlock() }

func (p *proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestPublishResume loses the acks of QoS 1 and 2 messages, reconnects, and
// checks they are resent with DUP and their original ids [MQTT-4.4.0-1]
// [MQTT-3.3.1-1], and that QoS 2 is still delivered exactly once.
func TestPublishResume(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			addr := startBroker(t)
			s, ch := dial(t, addr, Options{ClientID: "s", CleanStart: true})
			sub(t, s, "resume", 2)
			px := newProxy(t, addr)
			var mu sync.Mutex
			var dups []uint16
			o := Options{Addr: px.ln.Addr().String(), ClientID: "p", KeepAlive: 60, OnPacket: func(sent bool, p *codec.Packet) {
				if sent && p.Type == codec.PUBLISH && p.Dup {
					mu.Lock()
					dups = append(dups, p.PacketID)
					mu.Unlock()
				}
			}}
			p := New(o)
			if err := p.Connect(ctx5(t)); err != nil {
				t.Fatal(err)
			}
			px.hold(true)
			res := make(chan error, 1)
			if err := p.PublishAsync(ctx5(t), &Message{Topic: []byte("resume"), Payload: []byte("once"), QoS: qos}, func(err error) { res <- err }); err != nil {
				t.Fatal(err)
			}
			if qos == 1 { // mosquitto forwards QoS 2 only once PUBREL arrives
				if r := expect(t, ch); r.payload != "once" {
					t.Fatalf("got %+v", r)
				}
			} else {
				time.Sleep(100 * time.Millisecond) // let the PUBLISH reach the broker
			}
			px.drop()
			<-p.Done()
			px.hold(false)
			if p.Inflight() != 1 {
				t.Fatalf("inflight %d, want 1 kept for resend", p.Inflight())
			}
			if err := p.Connect(ctx5(t)); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-res:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no ack after resend")
			}
			mu.Lock()
			if len(dups) != 1 || dups[0] != 1 {
				t.Fatalf("resent DUP ids %v, want [1]", dups)
			}
			mu.Unlock()
			if qos == 2 {
				if r := expect(t, ch); r.payload != "once" {
					t.Fatalf("got %+v", r)
				}
				expectNone(t, ch, 200*time.Millisecond) // exactly once [MQTT-4.3.3-10]
			}
			p.Disconnect(codec.Success, nil)
		})
	}
}

// TestKeepAlive idles for longer than the keepalive and expects a
// PINGREQ/PINGRESP exchange [MQTT-3.1.2-23].
func TestKeepAlive(t *testing.T) {
	addr := startBroker(t)
	pong := make(chan struct{}, 1)
	c, _ := dial(t, addr, Options{ClientID: "ka", CleanStart: true, KeepAlive: 1, OnPacket: func(sent bool, p *codec.Packet) {
		if !sent && p.Type == codec.PINGRESP {
			select {
			case pong <- struct{}{}:
			default:
			}
		}
	}})
	select {
	case <-pong:
	case <-time.After(4 * time.Second):
		t.Fatal("no PINGRESP within 4s")
	}
	select {
	case <-c.Done():
		t.Fatalf("connection ended: %v", c.Err())
	default:
	}
}

// TestConnackRefused checks that a refused CONNECT is a *ConnackError.
func TestConnackRefused(t *testing.T) {
	addr := startBroker(t, "allow_anonymous false")
	for _, ver := range versions {
		c := New(Options{Addr: addr, Version: ver.v, ClientID: "x", CleanStart: true})
		err := c.Connect(ctx5(t))
		var ce *ConnackError
		if !errors.As(err, &ce) {
			t.Fatalf("v%s: err %v, want ConnackError", ver.name, err)
		}
		want := codec.ConnRefusedNotAuthorized
		if ver.v == codec.Version5 {
			want = codec.NotAuthorized
		}
		if ce.Code != want {
			t.Fatalf("v%s: code %#x want %#x", ver.name, ce.Code, want)
		}
	}
}

// TestPublishQoS0NoAlloc pins the zero-allocation QoS 0 path.
func TestPublishQoS0NoAlloc(t *testing.T) {
	addr := startBroker(t)
	for _, ver := range versions {
		c, _ := dial(t, addr, Options{Version: ver.v, ClientID: "alloc", CleanStart: true})
		m := &Message{Topic: []byte("bench/x"), Payload: make([]byte, 64)}
		allocs := testing.AllocsPerRun(200, func() {
			if err := c.Publish(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("v%s: %.1f allocs per QoS 0 publish, want 0", ver.name, allocs)
		}
		c.Disconnect(codec.Success, nil)
	}
}

func BenchmarkPublishQoS0(b *testing.B) {
	addr := startBroker(b)
	c := New(Options{Addr: addr, ClientID: "bench", CleanStart: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer c.Disconnect(codec.Success, nil)
	m := &Message{Topic: []byte("bench/x"), Payload: make([]byte, 64)}
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Payload)))
	for b.Loop() {
		if err := c.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCork: packets published between Cork and Flush leave together, in
// order; a QoS 1 publish that must wait for the inflight window flushes what
// gathered (else no ack could free the window), and nothing leaves before
// Flush otherwise.
func TestCork(t *testing.T) {
	addr := startBroker(t)
	s, ch := dial(t, addr, Options{ClientID: "cork-s", CleanStart: true})
	sub(t, s, "cork/#", 1)
	p, _ := dial(t, addr, Options{ClientID: "cork-p", CleanStart: true, MaxInflight: 2})
	p.Cork()
	for i := 0; i < 3; i++ {
		if err := p.Publish(ctx5(t), &Message{Topic: []byte(fmt.Sprintf("cork/%d", i)), Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	expectNone(t, ch, 200*time.Millisecond) // gathered, not written
	var acks sync.WaitGroup
	for i := 3; i < 6; i++ { // the third QoS 1 waits for the window: what gathered leaves
		acks.Add(1)
		if err := p.PublishAsync(ctx5(t), &Message{Topic: []byte(fmt.Sprintf("cork/%d", i)), Payload: []byte("x"), QoS: 1},
			func(error) { acks.Done() }); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	acks.Wait()
	for i := 0; i < 6; i++ {
		if r := expect(t, ch); r.topic != fmt.Sprintf("cork/%d", i) {
			t.Fatalf("message %d: %+v", i, r)
		}
	}
}

// TestCorkQoS2: under Cork, the PUBREL the reader answers a PUBREC with
// leaves at once: a publish waiting for the inflight window waits for the
// PUBCOMP it brings [MQTT-4.3.3-3]. It used to gather behind the cork, and
// the publish waited for nothing until its context ended.
func TestCorkQoS2(t *testing.T) {
	addr := startBroker(t)
	p, _ := dial(t, addr, Options{ClientID: "cork-q2", CleanStart: true, MaxInflight: 1})
	p.Cork()
	defer p.Flush()
	for i := 0; i < 3; i++ {
		if err := p.PublishAsync(ctx5(t), &Message{Topic: []byte("cork/q2"), Payload: []byte("x"), QoS: 2}, nil); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

// TestCopyPropsOrder: PublishAsync keeps a copy of the message for resends,
// so the properties' order (Props.Order) must not alias the caller's array,
// which it may reuse at once.
func TestCopyPropsOrder(t *testing.T) {
	p := codec.Properties{Order: []byte{codec.PropContentType, codec.PropUserProperty}}
	q := copyProps(&p)
	p.Order[0], p.Order[1] = codec.PropUserProperty, codec.PropContentType
	if len(q.Order) != 2 || q.Order[0] != codec.PropContentType || q.Order[1] != codec.PropUserProperty {
		t.Fatalf("copy's order % x changed with the original's", q.Order)
	}
}
