package loop

import (
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TestReasonReadableWhileSending: a client that goes on sending after the
// packet that gets it disconnected still reads the DISCONNECT and its reason
// code, then an orderly end of stream, not a reset: the broker shuts its
// side for writing and discards what else arrives for a short while before
// closing, rather than closing with unread bytes (which makes the kernel
// reset the connection and the client lose the reason) [MQTT-4.13.2-1].
func TestReasonReadableWhileSending(t *testing.T) {
	opts := session.DefaultOptions()
	opts.MaxInflight = 1
	tb := startBroker(t, &opts)
	r := tb.raw(t, codec.Version5)
	r.connect(connectPacket(codec.Version5, "chatty", true))

	var burst []byte
	for id := uint16(1); id <= 2; id++ { // the second exceeds Receive Maximum 1
		burst = (&codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: id, Topic: []byte("t")}).Encode(burst, codec.Version5)
	}
	filler := (&codec.Packet{Type: codec.PUBLISH, Topic: []byte("t"), Payload: make([]byte, 1000)}).Encode(nil, codec.Version5)
	for len(burst) < 2<<20 {
		burst = append(burst, filler...)
	}
	go func() {
		_ = r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = r.c.Write(burst) // fails part way once the broker closes: that is the point
	}()
	got := map[codec.PacketType]byte{}
	for {
		p, err := r.next(5 * time.Second)
		if err != nil {
			if !isClosedErr(err) || isReset(err) {
				t.Fatalf("after %v: %v (want the DISCONNECT, then end of stream)", got, err)
			}
			break
		}
		got[p.Type] = p.ReasonCode
	}
	if code, ok := got[codec.DISCONNECT]; !ok || code != codec.ReceiveMaximumExceeded {
		t.Fatalf("got %v, want DISCONNECT 0x93", got)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// TestWebSocketReasonThenClose: over a WebSocket, a connection the broker
// ends with a reason code gets the DISCONNECT, then a close frame (RFC 6455
// 5.5.1), then an orderly end of stream — not a reset — although the client
// goes on sending [MQTT-4.13.2-1].
func TestWebSocketReasonThenClose(t *testing.T) {
	tr := transport{name: "ws", ws: true}
	tb := startTransport(t, &tr, nil, nil)
	w := dialWS(t, tb.Addr, nil)
	r := &rawConn{t: t, c: w}
	r.dec.Version = codec.Version5
	r.connect(connectPacket(codec.Version5, "twice", true))
	again := connectPacket(codec.Version5, "twice", true).Encode(nil, codec.Version5) // a protocol error [MQTT-3.1.0-2]
	filler := (&codec.Packet{Type: codec.PUBLISH, Topic: []byte("t"), Payload: make([]byte, 1000)}).Encode(nil, codec.Version5)
	go func() {
		_ = w.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if w.writeFrame(ws.OpBinary, true, again) != nil {
			return
		}
		for i := 0; i < 2000; i++ { // fails part way once the broker closes: that is the point
			if w.writeFrame(ws.OpBinary, true, filler) != nil {
				return
			}
		}
	}()
	_ = w.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ops []ws.OpCode
	var disconnect []byte
	for {
		h, p, err := w.readFrame()
		if err != nil {
			if isReset(err) || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				t.Fatalf("after frames %v: %v (want an orderly end of stream)", ops, err)
			}
			break
		}
		ops = append(ops, h.OpCode)
		if h.OpCode == ws.OpBinary {
			disconnect = p
		}
	}
	if len(ops) != 2 || ops[0] != ws.OpBinary || ops[1] != ws.OpClose {
		t.Fatalf("frames %v, want the DISCONNECT's, then a close frame", ops)
	}
	var p codec.Packet
	d := codec.Decoder{Version: codec.Version5}
	if _, err := d.Decode(disconnect, &p); err != nil || p.Type != codec.DISCONNECT || p.ReasonCode != codec.ProtocolError {
		t.Fatalf("got %v 0x%02x (%v), want DISCONNECT 0x82", p.Type, p.ReasonCode, err)
	}
}
