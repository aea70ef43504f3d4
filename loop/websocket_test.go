package loop

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/midge-mqtt/midge/codec"
)

// TestWebSocketFraming checks MQTT over WebSocket framing on the gnet path
// and over TLS: the subprotocol, packets split across frames and several in
// one frame [MQTT-6.0.0-2], fragmented messages, ping and close, and the
// frames that close the connection (text [MQTT-6.0.0-1], unmasked).
func TestWebSocketFraming(t *testing.T) {
	for _, tr := range transports {
		if !tr.ws {
			continue
		}
		tr := tr
		t.Run(tr.name, func(t *testing.T) {
			tb := startTransport(t, &tr, nil, nil)
			open := func(t *testing.T) (*wsClient, *rawConn) {
				w := dialWS(t, tb.Addr, tr.clientTC)
				r := &rawConn{t: t, c: w}
				r.dec.Version = codec.Version311
				return w, r
			}
			frame := func(w *wsClient, op ws.OpCode, fin bool, p []byte) {
				if err := w.writeFrame(op, fin, p); err != nil {
					t.Errorf("write frame: %v", err) // the read that follows stops the subtest
				}
			}
			connect := connectPacket(codec.Version311, "", true).Encode(nil, codec.Version311)
			sub := (&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
				Subscriptions: []codec.Subscription{{Filter: []byte("f/#")}}}).Encode(nil, codec.Version311)
			pub := (&codec.Packet{Type: codec.PUBLISH, Topic: []byte("f/1"), Payload: []byte("split")}).Encode(nil, codec.Version311)

			t.Run("subprotocol", func(t *testing.T) {
				w, _ := open(t)
				if w.hs.Protocol != "mqtt" { // [MQTT-6.0.0-4]
					t.Fatalf("subprotocol %q, want mqtt", w.hs.Protocol)
				}
			})
			t.Run("split and batched", func(t *testing.T) {
				w, r := open(t)
				// CONNECT cut in three frames, one of them 1 byte.
				frame(w, ws.OpBinary, true, connect[:1])
				frame(w, ws.OpBinary, true, connect[1:5])
				frame(w, ws.OpBinary, true, connect[5:])
				r.expect(codec.CONNACK)
				// SUBSCRIBE, PUBLISH and half a PINGREQ in one frame, the rest next.
				one := append(append(append([]byte{}, sub...), pub...), 0xC0)
				frame(w, ws.OpBinary, true, one)
				frame(w, ws.OpBinary, true, []byte{0x00})
				r.expect(codec.SUBACK)
				// The PINGRESP may come before the PUBLISH, which is queued.
				seen := map[codec.PacketType]string{}
				for i := 0; i < 2; i++ {
					p, err := r.next(v5Wait)
					if err != nil {
						t.Fatal(err)
					}
					seen[p.Type] = string(p.Payload)
				}
				if seen[codec.PUBLISH] != "split" || len(seen) != 2 {
					t.Fatalf("got %v, want PUBLISH \"split\" and PINGRESP", seen)
				}
				// A PUBLISH in a fragmented message: binary (not final) + continuations.
				frame(w, ws.OpBinary, false, pub[:3])
				frame(w, ws.OpPing, true, []byte("in between")) // control frames may interleave
				frame(w, ws.OpContinuation, false, pub[3:6])
				frame(w, ws.OpContinuation, true, pub[6:])
				h, p, err := w.readFrame()
				if err != nil || h.OpCode != ws.OpPong || string(p) != "in between" {
					t.Fatalf("want pong, got %v %q %v", h.OpCode, p, err)
				}
				if p := r.expect(codec.PUBLISH); string(p.Payload) != "split" {
					t.Fatalf("payload %q", p.Payload)
				}
				// Close: the status code is echoed and the connection closed.
				frame(w, ws.OpClose, true, []byte{0x03, 0xE8})
				h, p, err = w.readFrame()
				if err != nil || h.OpCode != ws.OpClose || !bytes.Equal(p, []byte{0x03, 0xE8}) {
					t.Fatalf("want close 1000, got %v % x %v", h.OpCode, p, err)
				}
				r.expectClosed()
			})
			for name, bad := range map[string]func(w *wsClient){
				"text frame": func(w *wsClient) { frame(w, ws.OpText, true, connect) }, // [MQTT-6.0.0-1]
				"unmasked": func(w *wsClient) {
					_ = ws.WriteFrame(w.Conn, ws.NewBinaryFrame(connect))
				},
				"continuation first": func(w *wsClient) { frame(w, ws.OpContinuation, true, connect) },
			} {
				bad := bad
				t.Run(name, func(t *testing.T) {
					w, r := open(t)
					bad(w)
					_ = w.SetReadDeadline(time.Now().Add(v5Wait))
					h, p, err := w.readFrame()
					if err != nil || h.OpCode != ws.OpClose || !bytes.Equal(p, []byte{0x03, 0xEA}) {
						t.Fatalf("want close 1002, got %v % x %v", h.OpCode, p, err)
					}
					r.expectClosed()
				})
			}
		})
	}
}

// TestWebSocketHandshakeRefused checks that a request that is not a
// WebSocket upgrade gets an HTTP error and is closed.
func TestWebSocketHandshakeRefused(t *testing.T) {
	tr := transport{name: "ws", ws: true}
	tb := startTransport(t, &tr, nil, nil)
	c := tb.dial(t)
	if _, err := c.Write([]byte("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(v5Wait))
	var all bytes.Buffer
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		all.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !bytes.HasPrefix(all.Bytes(), []byte("HTTP/1.1 4")) {
		t.Fatalf("response %q, want an HTTP 4xx", all.String())
	}
}
