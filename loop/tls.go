package loop

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TLS on the event loops. gnet has no TLS, so each connection of a TLS
// listener gets a crypto/tls server Conn over an in-memory transport
// (tlsConn implements net.Conn for it) that the loop feeds:
//
//   - The handshake runs on a short-lived goroutine, started when the
//     ClientHello's first bytes arrive (a socket that sends nothing costs no
//     goroutine). The loop copies inbound bytes to it and writes out what it
//     produces; its CPU work holds one of a few tokens (Server.tlsTokens), so
//     a handshake flood leaves the loops a core. The CONNECT timeout covers
//     the handshake: the wheel closes a connection that has not sent CONNECT
//     in time, which ends its handshake goroutine.
//   - Once done, the connection is served by its loop alone. Inbound bytes
//     are handed to tls.Conn.Read only as whole records (the 5-byte header
//     gives the length), one record per transport Read, so crypto/tls's raw
//     input buffer never holds more than one record. With nothing left, the
//     transport's Read returns errTLSNoData, a temporary net.Error: in Go 1.26
//     readRecordOrCCS makes an error sticky only if it is not Temporary
//     (conn.go, both readFromUntil calls), and a record is never given in part,
//     so a record is never half-read when the error is returned.
//   - Post-handshake messages are crypto/tls's: Read answers a KeyUpdate
//     (writing its own when asked), refuses a TLS 1.2 renegotiation (an
//     error, and the connection closes), and returns io.EOF on close_notify
//     (closed like a socket without DISCONNECT: the will goes out). A
//     handshake message cut across records waits in crypto/tls's handshake
//     buffer; the no-data error on the way out of readHandshake is not kept
//     either (readHandshakeBytes returns readRecord's error as is).
//   - Decrypted packets are handed to the session one at a time, so that a
//     publisher is held back between packets as on plain TCP; the rest of
//     its record waits, decrypted, in pend.
//   - tls.Conn.Write encrypts into the loop's scratch (loopState.tlsOut),
//     flushed with one gnet Write per turn, like a plain connection's writev.
//     Records crypto/tls writes while reading (a KeyUpdate answer, an alert)
//     go the same way.
//
// A connection's state lives in loopState.tls, as a WebSocket's does in
// loopState.ws, so that a plain connection pays nothing for it.

const (
	tlsRecordHeader = 5
	// tlsMaxRecord bounds a record's body: 2^14 bytes of plaintext plus
	// 2^11 of expansion is the most RFC 5246 allows (RFC 8446: 2^14 + 256).
	tlsMaxRecord = 16384 + 2048
	// tlsMaxHandshakeIn bounds what a client may send ahead of the
	// handshake goroutine (a ClientHello and a certificate chain fit).
	tlsMaxHandshakeIn = 256 << 10
	// tlsReadBuffer is the loop's plaintext scratch: one record's worth.
	tlsReadBuffer = 16 << 10
)

var (
	errTLSNoData    net.Error = tlsNoData{}
	errTLSRecord              = errors.New("loop: tls: oversized record")
	errTLSHandshake           = errors.New("loop: tls: handshake data too large")
)

// tlsNoData is what the transport's Read returns when no whole record is
// buffered: a temporary error, which crypto/tls does not keep.
type tlsNoData struct{}

func (tlsNoData) Error() string   { return "loop: tls: no data yet" }
func (tlsNoData) Timeout() bool   { return true }
func (tlsNoData) Temporary() bool { return true }

// tlsConn is one TLS connection: the crypto/tls Conn and the transport under
// it. Loop-only once the handshake is done; during it, the handshake
// goroutine uses hs (under hs.mu) and tc.
type tlsConn struct {
	tc *tls.Conn
	c  *conn
	hs *tlsHandshake // nil once the connection is handed to the loop
	// pre holds bytes that are not in gnet's buffer: what the handshake
	// goroutine left unread. Nil almost always.
	pre []byte
	// pend is plaintext not yet used: an MQTT packet (or WebSocket frame
	// header) cut by a record boundary. Nil when idle.
	pend []byte
}

// tlsHandshake is the state shared by the loop and the handshake goroutine.
type tlsHandshake struct {
	mu       sync.Mutex
	cond     sync.Cond
	in       []byte // from the client, not yet read by crypto/tls
	out      []byte // to the client, not yet written by the loop
	closed   bool   // the connection is gone: reads fail
	finished bool
	err      error
	rec      int  // goroutine-only: bytes left of the record being read
	started  bool // loop-only
	holding  bool // goroutine-only: it holds a CPU token
}

// tlsFeed is what the connection being read on a loop may give crypto/tls:
// whole records (of gnet's buffer or of pre), for the length of one decrypt.
type tlsFeed struct {
	in  []byte
	rec int // bytes left of the record being read from in
}

// newTLS sets up c as a TLS connection of config. Loop-only.
func (ls *loopState) newTLS(c *conn, config *tls.Config) {
	t := &tlsConn{c: c, hs: &tlsHandshake{}}
	t.hs.cond.L = &t.hs.mu
	t.tc = tls.Server(t, config)
	if ls.tls == nil {
		ls.tls = make(map[*conn]*tlsConn)
	}
	ls.tls[c] = t
	c.set(secure, true)
}

// closeTLS forgets c's TLS state and ends its handshake, if one runs.
// Loop-only.
func (ls *loopState) closeTLS(c *conn) {
	t := ls.tls[c]
	if t == nil {
		return
	}
	delete(ls.tls, c)
	if h := t.hs; h != nil {
		h.mu.Lock()
		h.closed = true
		h.in = nil
		h.cond.Broadcast()
		h.mu.Unlock()
	}
}

// readTLS is readFrames for a TLS connection: it moves the handshake on, or
// decrypts the whole records buffered and hands their plaintext to the
// session (through WebSocket framing on a wss listener). Loop-only.
func (c *conn) readTLS(out *session.Output) error {
	t := c.ls.tls[c]
	if t == nil { // closed
		return nil
	}
	defer c.ls.flushTLS(c)
	if t.hs != nil {
		if done, err := t.handshakeTurn(); !done || err != nil {
			return err
		}
	}
	return t.readRecords(out)
}

// handshakeTurn writes what the handshake goroutine produced and gives it
// what came in; when the handshake has finished it hands the connection to
// the loop and reports done. Loop-only.
func (t *tlsConn) handshakeTurn() (done bool, err error) {
	h, gc := t.hs, t.c.gc
	buffered := gc.InboundBuffered()
	h.mu.Lock()
	out := h.out
	h.out = nil
	finished, herr := h.finished, h.err
	if !finished && buffered > 0 {
		if len(h.in)+buffered > tlsMaxHandshakeIn {
			h.mu.Unlock()
			return false, errTLSHandshake
		}
		b, _ := gc.Peek(buffered)
		h.in = append(h.in, b...)
		h.cond.Broadcast()
	}
	left := h.in
	h.mu.Unlock()
	if len(out) > 0 {
		_, _ = gc.Write(out)
	}
	if !finished {
		if buffered > 0 {
			_, _ = gc.Discard(buffered)
			if !h.started {
				h.started = true
				go t.handshake(t.c.ls.srv.tlsTokens)
			}
		}
		return false, nil
	}
	if herr != nil {
		s := t.c.ls.srv
		s.log.Printf("Client <unknown> from %s: TLS handshake failed: %v.", t.c.RemoteAddr(), herr)
		return false, session.ErrClosed
	}
	t.hs = nil
	if len(left) > 0 {
		t.pre = left
	}
	releaseTLS(t.tc) // the ClientHello's buffers
	if certs := t.tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		if ln := t.c.ls.srv.listenerOf(t.c.gc); ln != nil && ln.SubjectIdentity {
			t.c.client.SetIdentity(certs[0].Subject.String()) // use_subject_as_username
		} else {
			t.c.client.SetIdentity(certs[0].Subject.CommonName)
		}
	}
	return true, nil
}

// handshake runs crypto/tls's handshake on its own goroutine, then wakes
// the connection so that its loop takes it over.
func (t *tlsConn) handshake(tokens chan struct{}) {
	h := t.hs
	tokens <- struct{}{}
	h.holding = true
	err := t.tc.Handshake()
	if h.holding {
		<-tokens
	}
	h.mu.Lock()
	h.finished, h.err = true, err
	closed := h.closed
	h.mu.Unlock()
	if !closed {
		t.c.Wake()
	}
}

// readRecords decrypts the whole records buffered, one at a time where gnet
// holds them (a record Peeked alone is rarely copied), and handles their
// plaintext. Loop-only.
func (t *tlsConn) readRecords(out *session.Output) error {
	gc := t.c.gc
	if len(t.pend) > 0 || t.c.ls.ws[t.c] != nil { // packets left by a hold or a park go first
		if err := t.plaintext(nil, out); err != nil || t.c.is(held) || t.c.is(parked) {
			return err
		}
	}
	if len(t.pre) > 0 { // rare: the handshake left bytes; they go first
		if n := gc.InboundBuffered(); n > 0 {
			b, _ := gc.Peek(n)
			t.pre = append(t.pre, b...)
			_, _ = gc.Discard(n)
		}
		n, err := wholeRecords(t.pre)
		if err != nil {
			return err
		}
		used, err := t.decrypt(t.pre[:n], out)
		t.pre = t.pre[:copy(t.pre, t.pre[used:])]
		if len(t.pre) == 0 {
			t.pre = nil
		}
		return err
	}
	for read := 0; ; {
		// Fairness, as in readFrames: after a budget, let the loop's other
		// connections (a subscriber this publisher fills) have their turn.
		if read >= readBudget {
			t.c.ls.wake(t.c)
			return nil
		}
		buffered := gc.InboundBuffered()
		if buffered < tlsRecordHeader {
			return nil
		}
		hdr, _ := gc.Peek(tlsRecordHeader)
		size := int(binary.BigEndian.Uint16(hdr[3:]))
		if size > tlsMaxRecord {
			return errTLSRecord
		}
		if buffered < tlsRecordHeader+size {
			return nil
		}
		rec, _ := gc.Peek(tlsRecordHeader + size)
		used, err := t.decrypt(rec, out)
		if used > 0 { // gnet's Discard(0) discards everything
			_, _ = gc.Discard(used)
		}
		read += used
		if err != nil || t.c.is(held) {
			return err
		}
	}
}

// decrypt hands the whole records of b to crypto/tls and their plaintext to
// the session; it returns the bytes of b used. It stops early when the
// session holds the publisher back (as readFrames does), between records.
func (t *tlsConn) decrypt(b []byte, out *session.Output) (int, error) {
	c := t.c
	f := &t.c.ls.tlsFeed
	f.in = b
	t.c.ls.lendTLS(t.tc)
	defer releaseTLS(t.tc)
	buf := t.c.ls.tlsReadBuf()
	var err error
	for len(f.in) > 0 || f.rec > 0 {
		m, rerr := t.tc.Read(buf)
		if m > 0 {
			c.stats().BytesReceived.Add(int64(m))
			if err = t.plaintext(buf[:m], out); err != nil {
				break
			}
		}
		if rerr != nil {
			if rerr != errTLSNoData {
				err = t.readError(rerr)
			}
			break
		}
		if c.is(held) || c.is(parked) {
			break
		}
		// On wss the hold is checked per record (wsStream hands packets on in bulk).
		if c.client.TakeSlow() && c.gc.InboundBuffered() < holdLimit {
			c.hold()
			break
		}
	}
	used := len(b) - len(f.in)
	f.in = nil
	return used, err
}

// readError turns what tls.Conn.Read returned into the reason to close:
// a close_notify (io.EOF) closes quietly, anything else is logged.
func (t *tlsConn) readError(err error) error {
	if errors.Is(err, io.EOF) {
		return session.ErrClosed
	}
	s := t.c.ls.srv
	s.log.Printf("Client %s from %s: %v.", t.c.clientName(), t.c.RemoteAddr(), err)
	return session.ErrClosed
}

// plaintext hands decrypted bytes to the session: MQTT packets, or
// WebSocket frames carrying them. A cut packet waits in pend.
func (t *tlsConn) plaintext(p []byte, out *session.Output) error {
	c := t.c
	if len(t.pend) > 0 {
		t.pend = append(t.pend, p...)
		p = t.pend
	}
	var n int
	var err error
	if w := c.ls.ws[c]; w != nil {
		// MQTT bytes kept when a packet was parked go before any new frame.
		if err = w.resume(c, out, c.ls.dec.MaxPacketSize); err == nil && !c.client.Parked() {
			n, err = w.read(p, c, out, c.ls.dec.MaxPacketSize)
		}
		if len(w.ctl) > 0 {
			_, _ = t.tc.Write(w.ctl)
			w.ctl = nil // control frames are rare: an idle connection keeps no buffer
		}
		if w.got {
			w.got = false
			c.gotPackets()
		}
	} else {
		n, err = t.packets(p, out)
	}
	rest := p[n:]
	switch {
	case len(t.pend) > 0:
		t.pend = t.pend[:copy(t.pend, rest)]
		if len(t.pend) == 0 {
			t.pend = nil // an idle connection keeps no buffer
		}
	case len(rest) > 0:
		t.pend = append([]byte(nil), rest...)
	}
	if err == session.ErrParked {
		// Waiting for an auth answer: the packet and what follows wait
		// (in pend or the WebSocket stream), the socket is not read.
		c.set(parked, true)
		if !c.is(paused) && c.gc.PauseRead() == nil {
			c.set(paused, true)
		}
		err = nil
	}
	return err
}

// packets hands the MQTT packets of p to the session one at a time, and
// stops when a subscriber they go to is filling: the publisher is held back
// (as readFrames does it), and what is left of p waits in pend, already
// decrypted, until the subscriber drains. It returns the bytes used.
func (t *tlsConn) packets(p []byte, out *session.Output) (int, error) {
	c := t.c
	dec := c.decoder()
	defer func() { c.version = dec.Version }()
	used, handled := 0, 0
	var err error
	for used < len(p) {
		rest := p[used:]
		total, ferr := dec.ServerFrame(rest[:min(5, len(rest))], c.client.Connected())
		if ferr == codec.ErrIncomplete || ferr == nil && total > len(rest) {
			break
		}
		if ferr != nil {
			err = c.client.HandleError(ferr, out)
			break
		}
		var n, h int
		n, h, err = handlePackets(&c.client, dec, &c.ls.pkt, rest[:total], out)
		used += n
		handled += h
		if err != nil {
			break
		}
		if c.client.TakeSlow() && c.gc.InboundBuffered() < holdLimit {
			c.hold()
			break
		}
	}
	if handled > 0 {
		c.gotPackets()
	}
	return used, err
}

// gotPackets notes that packets came in: the keepalive starts again.
func (c *conn) gotPackets() {
	c.lastIn = time.Now().UnixMilli()
	if !c.is(stalled) && c.client.Connected() {
		c.schedule()
	}
}

// writeTLS is flush for a TLS connection: the turn's output (in one binary
// frame on wss) is encrypted into full-size records and written with one
// gnet Write. Loop-only.
func (c *conn) writeTLS(out *session.Output) {
	t := c.ls.tls[c]
	if t == nil || t.hs != nil { // closed, or nothing may be sent yet
		out.Done()
		return
	}
	ls := c.ls
	plain := ls.tlsPlain[:0]
	if c.is(webSocket) {
		plain = appendWSHeader(plain, ws.OpBinary, out.Len())
	}
	for _, v := range out.Vectors() {
		plain = append(plain, v...)
	}
	c.stats().BytesSent.Add(int64(out.Len()))
	out.Done()
	_, _ = t.tc.Write(plain) // an error is sticky in tc: the next read reports it
	if cap(plain) > 1<<20 {
		plain = nil // don't keep a burst's buffer
	}
	ls.tlsPlain = plain[:0]
	ls.flushTLS(c)
}

// flushTLS writes the records encrypted for c this turn. Loop-only.
func (ls *loopState) flushTLS(c *conn) {
	if len(ls.tlsOut) == 0 {
		return
	}
	_, _ = c.gc.Write(ls.tlsOut) // gnet copies what the socket does not take
	if cap(ls.tlsOut) > 1<<20 {
		ls.tlsOut = nil
	} else {
		ls.tlsOut = ls.tlsOut[:0]
	}
}

// tlsReadBuf is the loop's plaintext scratch.
func (ls *loopState) tlsReadBuf() []byte {
	if ls.tlsIn == nil {
		ls.tlsIn = make([]byte, tlsReadBuffer)
	}
	return ls.tlsIn
}

// wholeRecords returns the length of the whole records at the start of b.
func wholeRecords(b []byte) (int, error) {
	n := 0
	for len(b)-n >= tlsRecordHeader {
		size := int(binary.BigEndian.Uint16(b[n+3:]))
		if size > tlsMaxRecord {
			return n, errTLSRecord
		}
		if len(b)-n < tlsRecordHeader+size {
			break
		}
		n += tlsRecordHeader + size
	}
	return n, nil
}

// Read implements net.Conn for crypto/tls. During the handshake it blocks
// (on the handshake goroutine) until the loop brings bytes; afterwards it
// gives at most one record per call, and errTLSNoData when none is left.
func (t *tlsConn) Read(p []byte) (int, error) {
	if h := t.hs; h != nil {
		return h.read(p, t.c.ls.srv.tlsTokens)
	}
	f := &t.c.ls.tlsFeed
	if f.rec == 0 {
		if len(f.in) == 0 {
			return 0, errTLSNoData
		}
		f.rec = tlsRecordHeader + int(binary.BigEndian.Uint16(f.in[3:]))
	}
	n := copy(p, f.in[:f.rec])
	f.in, f.rec = f.in[n:], f.rec-n
	return n, nil
}

// read gives the handshake what the loop brought, waiting for it without
// holding a CPU token. It never gives more than the record under way, so
// that what the client sends right after its Finished (its CONNECT) stays in
// h.in for the loop, not in crypto/tls's buffer.
func (h *tlsHandshake) read(p []byte, tokens chan struct{}) (int, error) {
	h.mu.Lock()
	for !h.closed && (len(h.in) == 0 || h.rec == 0 && len(h.in) < tlsRecordHeader) {
		if h.holding {
			<-tokens
			h.holding = false
		}
		h.cond.Wait()
	}
	if h.closed {
		h.mu.Unlock()
		return 0, net.ErrClosed
	}
	if h.rec == 0 {
		h.rec = tlsRecordHeader + int(binary.BigEndian.Uint16(h.in[3:]))
	}
	n := copy(p, h.in[:min(len(h.in), h.rec)])
	h.rec -= n
	h.in = h.in[:copy(h.in, h.in[n:])]
	h.mu.Unlock()
	if !h.holding {
		tokens <- struct{}{}
		h.holding = true
	}
	return n, nil
}

// Write implements net.Conn for crypto/tls: records go to the loop's
// scratch, or, during the handshake, to the loop by a wake.
func (t *tlsConn) Write(p []byte) (int, error) {
	if h := t.hs; h != nil {
		h.mu.Lock()
		closed := h.closed
		h.out = append(h.out, p...)
		h.mu.Unlock()
		if closed {
			return 0, net.ErrClosed
		}
		t.c.Wake()
		return len(p), nil
	}
	t.c.ls.tlsOut = append(t.c.ls.tlsOut, p...)
	return len(p), nil
}

// Close implements net.Conn. crypto/tls calls it only from tls.Conn.Close,
// which midge does not use: gnet closes the socket.
func (t *tlsConn) Close() error { return nil }

// The rest of net.Conn: crypto/tls asks for addresses only to pass them to
// config callbacks midge does not set, and deadlines have no meaning here.
func (t *tlsConn) LocalAddr() net.Addr              { return nil }
func (t *tlsConn) RemoteAddr() net.Addr             { return nil }
func (t *tlsConn) SetDeadline(time.Time) error      { return nil }
func (t *tlsConn) SetReadDeadline(time.Time) error  { return nil }
func (t *tlsConn) SetWriteDeadline(time.Time) error { return nil }
