package loop

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gobwas/ws"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// MQTT over WebSocket (MQTT 5.0 section 6, 3.1.1 section 6): the opening
// handshake selects the subprotocol "mqtt", every MQTT byte travels in binary
// frames, and packets are not aligned on frame boundaries. wsStream is the
// transport-neutral part: it turns the inbound bytes of one connection into
// MQTT bytes for a packetSink and collects the control frames to send. It
// reads gnet's buffer on plain ws and the decrypted records on wss (tls.go).

// wsMaxHandshake bounds the opening handshake unless
// websockets_headers_size says otherwise.
const wsMaxHandshake = 8 << 10

// newWSStream is the framing state of a new connection on listener l.
func (s *Server) newWSStream(l *Listener) *wsStream {
	w := &wsStream{maxHandshake: wsMaxHandshake, httpDir: l.HTTPDir}
	if s.cfg.WSHeaderLimit > 0 {
		w.maxHandshake = s.cfg.WSHeaderLimit
	}
	return w
}

var (
	errWSHandshake = errors.New("loop: websocket handshake too large")
	errWSText      = errors.New("loop: websocket text frame (MQTT needs binary frames)")
	errWSProtocol  = errors.New("loop: websocket protocol error")
	errIncomplete  = errors.New("loop: incomplete")
)

// packetSink handles the complete MQTT packets at the start of b and reports
// how many bytes they took. A non-nil error means: write out, then close.
type packetSink interface {
	packets(b []byte, out *session.Output) (int, error)
}

// wsStream is one WebSocket connection's framing state. It is owned by the
// goroutine that reads the connection.
type wsStream struct {
	maxHandshake int    // bytes of opening handshake accepted
	httpDir      string // http_dir: plain GETs are answered from it ("": refused)
	upgraded     bool
	inMessage    bool // a fragmented binary message is under way
	left         int64
	mask         [4]byte
	maskOff      int
	got          bool   // a packet was handled since the owner last looked
	stream       []byte // MQTT bytes of a packet that spans frames
	ctl          []byte // handshake response and control frames to send first
	out          wsFramer
}

// wsFramer wraps outgoing batches in binary frames. It is owned by the
// goroutine that writes the connection.
type wsFramer struct {
	hdr [ws.MaxHeaderSize]byte
	iov [][]byte
}

// wsUpgrader accepts the subprotocol "mqtt" [MQTT-6.0.0-3] [MQTT-6.0.0-4]
// (and "mqttv3.1", which MQTT 3.1 clients offer).
var wsUpgrader = ws.Upgrader{
	Protocol: func(p []byte) bool { return string(p) == "mqtt" || string(p) == "mqttv3.1" },
}

// read consumes what it can of b, the connection's buffered inbound bytes:
// the opening handshake, then WebSocket frames. Data payloads are unmasked in
// place and handed to sink; a packet cut by a frame boundary is kept in
// w.stream until its end arrives [MQTT-6.0.0-2]. It returns the bytes used,
// which the caller discards; nothing of b is referenced after it returns.
// maxPacket bounds an MQTT packet (0: the protocol limit).
func (w *wsStream) read(b []byte, sink packetSink, out *session.Output, maxPacket int) (int, error) {
	used := 0
	if !w.upgraded {
		end := bytes.Index(b, []byte("\r\n\r\n"))
		if end < 0 {
			if len(b) >= w.maxHandshake {
				return 0, errWSHandshake
			}
			return 0, nil
		}
		used = end + 4
		if used > w.maxHandshake {
			return used, errWSHandshake
		}
		if w.httpDir != "" && !isUpgrade(b[:used]) {
			return used, w.serveFile(b[:used])
		}
		if err := w.upgrade(b[:used]); err != nil {
			return used, err
		}
	}
	for used < len(b) {
		rest := b[used:]
		if w.left > 0 { // the rest of a data frame's payload
			p := rest[:min(int64(len(rest)), w.left)]
			ws.Cipher(p, w.mask, w.maskOff)
			w.maskOff += len(p)
			w.left -= int64(len(p))
			used += len(p)
			if err := w.data(p, sink, out, maxPacket); err != nil {
				return used, err
			}
			continue
		}
		h, hn, err := parseWSHeader(rest)
		if err == errIncomplete {
			break
		}
		if err == nil {
			err = w.check(h)
		}
		if err != nil {
			w.closeFrame(ws.StatusProtocolError)
			return used, err
		}
		if !h.OpCode.IsControl() {
			used += hn
			w.left, w.mask, w.maskOff = h.Length, h.Mask, 0
			continue
		}
		total := hn + int(h.Length) // a control frame is at most 125 bytes: wait for all of it
		if len(rest) < total {
			break
		}
		payload := rest[hn:total]
		ws.Cipher(payload, h.Mask, 0)
		used += total
		switch h.OpCode {
		case ws.OpPing:
			w.control(ws.OpPong, payload)
		case ws.OpClose:
			// Echo the status code and close (RFC 6455 5.5.1).
			w.control(ws.OpClose, payload[:min(2, len(payload))])
			return used, session.ErrClosed
		}
	}
	return used, nil
}

// check validates a frame header against RFC 6455 and MQTT section 6.
func (w *wsStream) check(h ws.Header) error {
	switch {
	case !h.Masked: // a client's frames are masked (RFC 6455 5.1)
		return fmt.Errorf("%w: unmasked frame", errWSProtocol)
	case h.Rsv != 0: // no extension is negotiated
		return fmt.Errorf("%w: reserved bits set", errWSProtocol)
	case h.OpCode.IsControl():
		if h.Length > 125 || !h.Fin {
			return fmt.Errorf("%w: bad control frame", errWSProtocol)
		}
		if h.OpCode != ws.OpPing && h.OpCode != ws.OpPong && h.OpCode != ws.OpClose {
			return fmt.Errorf("%w: reserved opcode %d", errWSProtocol, h.OpCode)
		}
		return nil
	case h.OpCode == ws.OpText:
		// Control packets travel in binary frames; anything else closes the
		// connection [MQTT-6.0.0-1].
		return errWSText
	case h.OpCode == ws.OpBinary:
		if w.inMessage {
			return fmt.Errorf("%w: new message inside a fragmented one", errWSProtocol)
		}
	case h.OpCode == ws.OpContinuation:
		if !w.inMessage {
			return fmt.Errorf("%w: continuation without a message", errWSProtocol)
		}
	default:
		return fmt.Errorf("%w: reserved opcode %d", errWSProtocol, h.OpCode)
	}
	w.inMessage = !h.Fin
	return nil
}

// data hands MQTT bytes to sink. Packets wholly inside p are decoded where
// they lie; only a packet cut by a frame boundary is copied, into w.stream.
// The sink refuses a packet over maxPacket from its fixed header, so the
// stream never holds more than one legal packet and the next chunk.
func (w *wsStream) data(p []byte, sink packetSink, out *session.Output, maxPacket int) error {
	if len(w.stream) == 0 {
		n, err := sink.packets(p, out)
		if err == session.ErrParked {
			w.stream = append(w.stream, p[n:]...) // handled again by resume
		}
		if err != nil {
			return err
		}
		w.stream = append(w.stream, p[n:]...)
		return nil
	}
	w.stream = append(w.stream, p...)
	n, err := sink.packets(w.stream, out)
	w.stream = w.stream[:copy(w.stream, w.stream[n:])]
	if len(w.stream) == 0 && cap(w.stream) > 64<<10 {
		w.stream = nil // don't keep a large packet's buffer
	}
	return err
}

// resume handles again the MQTT bytes kept when a packet was parked for an
// auth answer, before any new frame is read.
func (w *wsStream) resume(sink packetSink, out *session.Output, maxPacket int) error {
	if len(w.stream) == 0 {
		return nil
	}
	return w.data(nil, sink, out, maxPacket)
}

// upgrade answers the opening handshake in req (the request up to its blank
// line), with gobwas/ws checking it. The response goes to w.ctl; on a bad
// request it is gobwas's HTTP error and err is non-nil.
func (w *wsStream) upgrade(req []byte) error {
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(req), (*appendWriter)(&w.ctl)}
	if _, err := wsUpgrader.Upgrade(rw); err != nil {
		return fmt.Errorf("loop: websocket handshake: %w", err)
	}
	w.upgraded = true
	return nil
}

// control queues a control frame (server frames are not masked).
func (w *wsStream) control(op ws.OpCode, payload []byte) {
	w.ctl = appendWSHeader(w.ctl, op, len(payload))
	w.ctl = append(w.ctl, payload...)
}

// closeFrame queues a close frame with code.
func (w *wsStream) closeFrame(code ws.StatusCode) {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], uint16(code))
	w.control(ws.OpClose, b[:])
}

// frame returns out's bytes as one binary frame: a header and out's vectors,
// valid until out.Done. One frame per batch, however many packets it holds.
func (w *wsFramer) frame(out *session.Output) [][]byte {
	hdr := appendWSHeader(w.hdr[:0], ws.OpBinary, out.Len())
	w.iov = append(w.iov[:0], hdr)
	w.iov = append(w.iov, out.Vectors()...)
	return w.iov
}

// release drops the references frame handed out.
func (w *wsFramer) release() {
	for i := range w.iov {
		w.iov[i] = nil
	}
	w.iov = w.iov[:0]
}

// appendWSHeader appends an unmasked, final frame header.
func appendWSHeader(dst []byte, op ws.OpCode, n int) []byte {
	dst = append(dst, 0x80|byte(op))
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

// parseWSHeader reads a frame header from the start of b. gobwas's
// ReadHeader does the same from an io.Reader, allocating per frame; this
// reads the buffered bytes in place.
func parseWSHeader(b []byte) (h ws.Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, errIncomplete
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, errIncomplete
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, errIncomplete
		}
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return h, 0, ws.ErrHeaderLengthMSB
		}
		h.Length = int64(v)
		n = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, errIncomplete
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// appendWriter is an io.Writer appending to a byte slice.
type appendWriter []byte

func (a *appendWriter) Write(p []byte) (int, error) {
	*a = append(*a, p...)
	return len(p), nil
}

// handlePackets decodes the complete MQTT packets at the start of b in place
// and hands each to client, as conn.readFrames does with gnet's buffer. It
// returns the bytes used and how many packets were handled. Frames are
// judged from their fixed header (codec.Decoder.ServerFrame): a wrong first
// byte, or a size over the limits, is refused before the body is buffered.
func handlePackets(client *session.Client, dec *codec.Decoder, pkt *codec.Packet, b []byte, out *session.Output) (used, handled int, err error) {
	for len(b)-used >= 1 {
		rest := b[used:]
		total, err := dec.ServerFrame(rest[:min(5, len(rest))], client.Connected())
		if err == codec.ErrIncomplete {
			break
		}
		if err != nil {
			return used, handled, client.HandleError(err, out)
		}
		if len(rest) < total {
			break
		}
		frame := rest[:total]
		used += total
		if _, err := dec.Decode(frame, pkt); err != nil {
			if !client.Connected() && frame[0]>>4 == byte(codec.CONNECT) {
				client.SetDecoderVersion(connectLevel(frame))
			}
			return used, handled, client.HandleError(err, out)
		}
		if err := client.Handle(pkt, out); err != nil {
			if err == session.ErrParked { // kept, to be handled again
				return used - total, handled, err
			}
			return used, handled + 1, err
		}
		handled++
	}
	return used, handled, nil
}

// packets implements packetSink for a gnet connection. Loop-only.
func (c *conn) packets(b []byte, out *session.Output) (int, error) {
	dec := c.decoder()
	n, handled, err := handlePackets(&c.client, dec, &c.ls.pkt, b, out)
	c.version = dec.Version
	if w := c.ls.ws[c]; handled > 0 && w != nil {
		w.got = true
	}
	return n, err
}

// readWebSocket is readFrames for a WebSocket listener on gnet: the frames
// are parsed and unmasked in gnet's inbound buffer. Loop-only.
func (c *conn) readWebSocket(out *session.Output) error {
	w := c.ls.ws[c]
	if w == nil { // closed
		return nil
	}
	buffered := c.gc.InboundBuffered()
	err := w.resume(c, out, c.ls.dec.MaxPacketSize)
	if err == nil && !c.client.Parked() && buffered > 0 {
		b, _ := c.gc.Peek(buffered)
		var n int
		n, err = w.read(b, c, out, c.ls.dec.MaxPacketSize)
		if n > 0 { // gnet's Discard(0) discards everything buffered
			_, _ = c.gc.Discard(n)
			c.stats().BytesReceived.Add(int64(n))
		}
	}
	if len(w.ctl) > 0 {
		_, _ = c.gc.Write(w.ctl) // gnet copies what it cannot send now
		w.ctl = w.ctl[:0]
	}
	if w.got {
		w.got = false
		c.lastIn = time.Now().UnixMilli()
		if !c.is(stalled) && c.client.Connected() {
			c.schedule()
		}
	}
	if err == session.ErrParked {
		c.set(parked, true) // its bytes wait in w.stream
		err = nil
	}
	return err
}

// writeWebSocket is flush for a WebSocket connection: the turn's output goes
// out as one binary frame with one writev. Loop-only.
func (c *conn) writeWebSocket(out *session.Output) {
	w := c.ls.ws[c]
	if w == nil { // closed while this turn ran (a failed write closes at once)
		out.Done()
		return
	}
	c.stats().BytesSent.Add(int64(out.Len()))
	_, _ = c.gc.Writev(w.out.frame(out))
	w.out.release()
	out.Done()
}
