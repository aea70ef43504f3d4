package loop

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// transport is one kind of listener: MQTT on TCP, on TLS, on WebSocket and
// on WebSocket over TLS, all served by the gnet loops.
type transport struct {
	name     string
	tls, ws  bool
	server   *tls.Config // set by startTransport
	clientTC *tls.Config
	caPEM    []byte // the CA that signed server
}

var transports = []transport{
	{name: "tcp"},
	{name: "tls", tls: true},
	{name: "ws", ws: true},
	{name: "wss", tls: true, ws: true},
}

// startTransport starts a broker with one listener of kind tr.
func startTransport(t testing.TB, tr *transport, opts *session.Options, pol *session.Policy, cfg ...func(*Config)) *testBroker {
	t.Helper()
	if tr.tls && tr.server == nil {
		pki := newPKI(t, "midge test CA")
		tr.server, tr.clientTC, tr.caPEM = pki.serverTLS(t, nil), pki.clientTLS(), pki.pem
	}
	l := Listener{Addr: "127.0.0.1:0", WebSocket: tr.ws, Policy: pol}
	if tr.tls {
		l.TLS = tr.server
	}
	cfg = append([]func(*Config){func(c *Config) { c.Listeners, c.Listen = nil, []Listener{l} }}, cfg...)
	return startBroker(t, opts, cfg...)
}

// dialTransport opens a connection of kind tr as a raw MQTT conn.
func (tb *testBroker) dialTransport(t testing.TB, tr *transport, version byte) *rawConn {
	t.Helper()
	var c net.Conn
	switch {
	case tr.ws && tr.tls:
		c = dialWS(t, tb.Addr, tr.clientTC)
	case tr.ws:
		c = dialWS(t, tb.Addr, nil)
	case tr.tls:
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: v5Wait}, "tcp", tb.Addr, tr.clientTC)
		if err != nil {
			t.Fatalf("tls dial: %v", err)
		}
		t.Cleanup(func() { tc.Close() })
		c = tc
	default:
		c = tb.dial(t)
	}
	r := &rawConn{t: t, c: c}
	r.dec.Version = version
	return r
}

// TestTransportPubSub runs QoS 0, 1 and 2 and a retained message through
// every kind of listener, with both MQTT 3.1.1 and 5.0.
func TestTransportPubSub(t *testing.T) {
	for _, tr := range transports {
		for _, v := range []byte{codec.Version311, codec.Version5} {
			tr := tr
			t.Run(tr.name+"/v"+string('0'+v), func(t *testing.T) {
				tb := startTransport(t, &tr, nil, nil)
				sub := tb.dialTransport(t, &tr, v)
				if ack := sub.connect(connectPacket(v, "sub", true)); ack.ReasonCode != 0 {
					t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
				}
				sub.subscribe(1, codec.Subscription{Filter: []byte("t/#"), QoS: 2}, 0)
				pub := tb.dialTransport(t, &tr, v)
				pub.connect(connectPacket(v, "pub", true))
				for qos := byte(0); qos <= 2; qos++ {
					payload := strings.Repeat("x", 100*int(qos)+1) + "end"
					pub.publish("t/q", payload, qos, uint16(10+qos), nil)
					got := sub.expect(codec.PUBLISH)
					if got.QoS != qos || string(got.Payload) != payload {
						t.Fatalf("qos %d: got qos %d payload %q", qos, got.QoS, got.Payload)
					}
					sub.ack(got)
				}
				// A large payload (several TLS records, a 64-bit WebSocket length).
				big := strings.Repeat("b", 200<<10)
				pub.publish("t/big", big, 1, 20, nil)
				if got := sub.expect(codec.PUBLISH); string(got.Payload) != big {
					t.Fatalf("big payload: got %d bytes", len(got.Payload))
				} else {
					sub.ack(got)
				}
				// Retained: a new subscriber gets it [MQTT-3.3.1-6].
				p := &codec.Packet{Type: codec.PUBLISH, Topic: []byte("r/1"), Payload: []byte("kept"), QoS: 1, PacketID: 30, Retain: true}
				pub.send(p)
				pub.expect(codec.PUBACK)
				late := tb.dialTransport(t, &tr, v)
				late.connect(connectPacket(v, "late", true))
				late.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 2,
					Subscriptions: []codec.Subscription{{Filter: []byte("r/#"), QoS: 1}}})
				late.expect(codec.SUBACK)
				if got := late.expect(codec.PUBLISH); !got.Retain || string(got.Payload) != "kept" {
					t.Fatalf("retained: got retain %v payload %q", got.Retain, got.Payload)
				}
			})
		}
	}
}

// ack completes the receiver's side of a QoS 1 or 2 delivery.
func (r *rawConn) ack(p *codec.Packet) {
	r.t.Helper()
	switch p.QoS {
	case 1:
		r.send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	case 2:
		r.send(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID})
		r.expect(codec.PUBREL)
		r.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
	}
}

// TestTransportKeepalive checks that every kind of listener closes a client
// silent for 1.5 times its keepalive [MQTT-3.1.2-24], with DISCONNECT 0x8D in
// v5, and not before.
func TestTransportKeepalive(t *testing.T) {
	for _, tr := range transports {
		tr := tr
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			tb := startTransport(t, &tr, nil, nil)
			r := tb.dialTransport(t, &tr, codec.Version5)
			p := connectPacket(codec.Version5, "ka", true)
			p.Connect.KeepAlive = 1
			start := time.Now()
			r.connect(p)
			// gnet's wheel looks once a second, later when the machine is busy.
			d, err := r.next(15 * time.Second)
			if err != nil || d.Type != codec.DISCONNECT || d.ReasonCode != codec.KeepAliveTimeout {
				t.Fatalf("want DISCONNECT 0x8D, got %v %v", d, err)
			}
			if d := time.Since(start); d < 1500*time.Millisecond {
				t.Fatalf("closed after %v, before 1.5 times the keepalive", d)
			}
			r.expectClosed()
		})
	}
}

// TestTransportConnectTimeout checks that a socket that sends no CONNECT is
// closed after the CONNECT timeout (a TLS or WebSocket handshake counts).
func TestTransportConnectTimeout(t *testing.T) {
	for _, tr := range transports {
		tr := tr
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			tb := startTransport(t, &tr, nil, nil, func(c *Config) { c.ConnectTimeout = time.Second })
			r := tb.dialTransport(t, &tr, codec.Version5)
			start := time.Now()
			r.expectClosed()
			if d := time.Since(start); d > 4*time.Second {
				t.Fatalf("closed after %v", d)
			}
			// A bare TCP socket that never starts TLS or WebSocket is closed too.
			raw := tb.dial(t)
			_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			var b [1]byte
			if _, err := raw.Read(b[:]); !isClosedErr(err) {
				t.Fatalf("bare socket: %v", err)
			}
		})
	}
}

// TestTransportShutdown checks Server.Shutdown on every kind of listener:
// v5 clients get DISCONNECT 0x8B, then the listener is closed.
func TestTransportShutdown(t *testing.T) {
	for _, tr := range transports {
		tr := tr
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			tb := startTransport(t, &tr, nil, nil)
			var rs []*rawConn
			for i := 0; i < 3; i++ {
				r := tb.dialTransport(t, &tr, codec.Version5)
				r.connect(connectPacket(codec.Version5, "", true))
				rs = append(rs, r)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tb.Server.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			for _, r := range rs {
				r.expectDisconnect(codec.ServerShuttingDown)
			}
			if c, err := net.DialTimeout("tcp", tb.Addr, time.Second); err == nil {
				c.Close()
				t.Fatal("broker still accepts connections")
			}
		})
	}
}

// TestTransportMaxPacketSize checks that a packet over max_packet_size is
// refused from its fixed header, before its body arrives (DISCONNECT 0x95).
func TestTransportMaxPacketSize(t *testing.T) {
	for _, tr := range transports {
		tr := tr
		t.Run(tr.name, func(t *testing.T) {
			opts := session.DefaultOptions()
			opts.MaxPacketSize = 1024
			tb := startTransport(t, &tr, &opts, nil)
			r := tb.dialTransport(t, &tr, codec.Version5)
			r.connect(connectPacket(codec.Version5, "big", true))
			// Only the fixed header of a 1 MiB PUBLISH is sent.
			r.write([]byte{0x30, 0x80, 0x80, 0x40})
			r.expectDisconnect(codec.PacketTooLarge)
		})
	}
}
