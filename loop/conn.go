package loop

import (
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// conn is the per-connection context. Loop-only, except the Transport
// methods Wake and Close.
type conn struct {
	gc     *gnet.UnixConn // gnet's only Conn here: a pointer, not a 16-byte interface
	ls     *loopState
	lastIn int64 // unix milliseconds of the last packet received

	wheelPrev, wheelNext *conn

	client session.Client // held here: one allocation per connection, not two

	// Small fields last, so that the struct packs without padding: one conn
	// is held per connection, idle or not (144 bytes, a size class: TestConnSize). What
	// few connections need (a WebSocket's stream) is kept by the loop, and
	// the listener is found again from the socket when it closes.
	wheelAt uint32 // unix second of its wheel slot (0: not in the wheel); lasts until 2106
	version byte   // protocol level for the decoder (codec.Decoder.Version)
	flags   connFlags
}

// connFlags are a conn's states, one bit each.
type connFlags uint8

const (
	closed    connFlags = 1 << iota
	stalled             // in the loop's stalled list, retried by the tick
	held                // not read until woken: a subscriber it publishes to is behind
	webSocket           // protocol websockets: its stream is in loopState.ws (websocket.go)
	paused              // held, and its socket is not read either (backpressure.go)
	secure              // a TLS listener's: its state is in loopState.tls (tls.go)
	parked              // its first unread packet waits for an auth answer (session.ErrParked)
	lingering           // closed for writing after a reason code; what arrives is discarded (linger.go)
)

func (c *conn) is(f connFlags) bool { return c.flags&f != 0 }

func (c *conn) set(f connFlags, on bool) {
	if on {
		c.flags |= f
	} else {
		c.flags &^= f
	}
}

// decoder returns the loop's decoder set up for this connection. Copy its
// Version back after Decode (a CONNECT sets it). Loop-only.
func (c *conn) decoder() *codec.Decoder {
	d := &c.ls.dec
	d.Version = c.version
	return d
}

// stats are the broker's counters.
func (c *conn) stats() *session.Stats { return &c.ls.srv.broker.Stats }

// Wake implements session.Transport. Any goroutine.
func (c *conn) Wake() { c.ls.wake(c) }

// YieldsOnTakeover implements session.Yielder: drain handles
// session.ErrYielded, and readFrames a parked CONNECT.
func (c *conn) YieldsOnTakeover() {}

// Close implements session.Transport. Any goroutine.
func (c *conn) Close() { _ = c.gc.Close() }

// RemoteAddr implements session.Transport. Loop-only (it is made on demand,
// for logs, rather than kept per connection). gnet forgets the address when
// it closes the connection, which a failed write does at once, in the
// middle of a turn: the close is then logged with "unknown" (it was a nil
// dereference that stopped the broker, found by the soak).
func (c *conn) RemoteAddr() string {
	if a := c.gc.RemoteAddr(); a != nil {
		return a.String()
	}
	return "unknown"
}

// OnOpen sets up the connection's context. Loop-only.
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s.conns.Add(1)
	if s.closing.Load() {
		s.conns.Add(-1)
		return nil, gnet.Close
	}
	ls := s.loopOf(gc.EventLoop())
	c := &conn{gc: gc.(*gnet.UnixConn), ls: ls, lastIn: time.Now().UnixMilli()}
	ln := s.listenerOf(gc)
	if ln.WebSocket {
		c.set(webSocket, true)
		ls.ws[c] = s.newWSStream(&ln.Listener)
	}
	if ln.TLS != nil {
		ls.newTLS(c, ln.TLS)
	}
	s.broker.InitClient(&c.client, c, ln.Policy)
	gc.SetContext(c)
	if max := ln.MaxConnections; ln.conns.Add(1) > int64(max) && max > 0 {
		// mosquitto closes the socket of a connection over the limit.
		s.log.Printf("Connection from %s refused: max_connections (%d) reached.", c.RemoteAddr(), max)
		return nil, gnet.Close
	}
	ls.wheel.add(c, ceilSecond(c.lastIn+s.cfg.ConnectTimeout.Milliseconds()))
	return nil, gnet.None
}

// OnClose ends the connection's session side. It can run inside another
// callback (a failed write closes synchronously), so it is idempotent.
// Loop-only.
func (s *Server) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil || c.is(closed) {
		return gnet.None
	}
	c.set(closed, true)
	s.conns.Add(-1)
	s.listenerOf(gc).conns.Add(-1) // gnet keeps the local address until after OnClose
	c.ls.wheel.remove(c)
	if c.is(webSocket) {
		delete(c.ls.ws, c)
	}
	if c.is(secure) {
		c.ls.closeTLS(c)
	}
	c.client.Closed(err)
	return gnet.None
}

// OnTraffic decodes every complete frame in the inbound buffer, hands each
// to the session, drains the session's queue and writes the turn's output
// with one writev. It also runs when the connection is woken. Loop-only.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil || c.is(closed) {
		return gnet.Close
	}
	if c.is(lingering) {
		c.discardInbound()
		return gnet.None
	}
	out := &c.ls.out
	var err error
	if c.is(held) && gc.InboundBuffered() >= holdLimit {
		// Only where reading cannot be paused: a QoS 0 firehose is read
		// on, and its overflow dropped.
		c.set(held, false)
	}
	if c.is(parked) && c.parkedOverflow() {
		// Where reading could not be paused, nothing it sends is handled
		// while its auth answer is awaited: a client that keeps sending
		// would grow its buffer without bound.
		s.log.Printf("Client %s from %s: sent over %d bytes while waiting for its auth answer, disconnecting.",
			c.clientName(), c.RemoteAddr(), holdLimit)
		return gnet.Close
	}
	err = c.turn(out)
	if err != nil {
		s.logClose(c, err)
		if c.linger(err) {
			return gnet.None
		}
		return gnet.Close
	}
	return gnet.None
}

// parkedOverflow reports whether a parked connection has sent holdLimit
// bytes or more beyond the packet that waits (which may itself be large).
// Loop-only.
func (c *conn) parkedOverflow() bool {
	buffered := c.gc.InboundBuffered()
	if buffered < holdLimit {
		return false
	}
	if c.is(webSocket) { // the waiting packet is in the WebSocket stream
		return true
	}
	head, _ := c.gc.Peek(min(5, buffered))
	total, err := codec.FrameSize(head, c.ls.dec.MaxPacketSize)
	if err != nil {
		total = 0
	}
	return buffered-total >= holdLimit
}

// turn is one loop turn of a connection: handle what came in, then send
// what is queued for it. A non-nil error means: close it. Loop-only.
func (c *conn) turn(out *session.Output) error {
	if c.is(lingering) { // it has said its last word
		return nil
	}
	now := time.Now()
	out.SetNow(now)
	if c.is(parked) {
		if c.client.Parked() {
			// Waiting for an auth service: nothing is handled (its packet
			// stays first in the inbound buffer) nor read (paused), other
			// connections go on.
			return c.serve(out)
		}
		c.set(parked, false) // the answer is in: handle that packet again
	}
	if c.is(held) && c.client.StillHeld(now) {
		// Held back: new bytes wait in the kernel (and what was read in
		// the inbound buffer) until the queue it waits on drains. Woken meanwhile (acks became durable, or the
		// tick's retry), it only sends what is due.
		c.stall()
		return c.serve(out)
	}
	c.release()
	err := c.readFrames(out)
	if err == nil {
		return c.serve(out)
	}
	c.flush(out)
	return err
}

// serve drains the session's queue into out and writes it. A non-nil error
// means the connection must be closed (what was queued is written first).
// Loop-only.
func (c *conn) serve(out *session.Output) error {
	err := c.drain(out)
	c.flush(out)
	return err
}

// readFrames handles every complete packet buffered. Frames are decoded in
// place (Peek) and discarded only after the session is done with them.
func (c *conn) readFrames(out *session.Output) error {
	if c.is(secure) {
		return c.readTLS(out)
	}
	if c.is(webSocket) {
		return c.readWebSocket(out)
	}
	gc := c.gc
	pkt := &c.ls.pkt
	got := false
	read := 0
	defer func() {
		if read > 0 {
			c.stats().BytesReceived.Add(int64(read))
		}
	}()
	for {
		buffered := gc.InboundBuffered()
		if buffered < 1 {
			break
		}
		// Judged from its first bytes: a frame that is wrong from the
		// start closes the connection without waiting for its body.
		head, _ := gc.Peek(min(5, buffered))
		total, err := c.decoder().ServerFrame(head, c.client.Connected())
		if err == codec.ErrIncomplete {
			break
		}
		if err != nil {
			return c.client.HandleError(err, out)
		}
		if buffered < total {
			break
		}
		frame, _ := gc.Peek(total)
		dec := c.decoder()
		_, err = dec.Decode(frame, pkt)
		c.version = dec.Version
		if err != nil {
			if !c.client.Connected() && len(frame) > 0 && frame[0]>>4 == byte(codec.CONNECT) {
				c.client.SetDecoderVersion(connectLevel(frame))
			}
			_, _ = gc.Discard(total)
			return c.client.HandleError(err, out)
		}
		err = c.client.Handle(pkt, out)
		if err == session.ErrParked {
			// The frame stays unhandled until the answer is in, and the
			// socket unread (gnet's PauseRead): what the client sends
			// meanwhile waits in the kernel, as for a held publisher.
			c.set(parked, true)
			if !c.is(paused) && gc.PauseRead() == nil {
				c.set(paused, true)
			}
			break
		}
		got = true
		read += total
		_, _ = gc.Discard(total)
		if err != nil {
			return err
		}
		// Back-pressure: a subscriber's queue is filling, so read no more
		// from this publisher until it drains (the subscriber's drain wakes
		// it; the tick retries as a safety net). Unread bytes stay in the
		// kernel, and TCP slows the sender (backpressure.go).
		if c.client.TakeSlow() && gc.InboundBuffered() < holdLimit {
			c.hold()
			break
		}
		// Fairness: after a budget of frames, let the other connections of
		// this loop have their turn, then go on.
		if read >= readBudget {
			c.ls.wake(c)
			break
		}
	}
	if got {
		c.lastIn = time.Now().UnixMilli()
		if !c.is(stalled) && c.client.Connected() {
			c.schedule()
		}
	}
	return nil
}

// schedule puts the connection in the wheel at its keepalive deadline:
// 1.5 times the keepalive after the last packet [MQTT-3.1.2-24]. Traffic
// does not move an entry that is due earlier (expire looks again then); only
// a missing entry, or one due later (the CONNECT timeout), is moved.
func (c *conn) schedule() {
	ka := int64(c.client.Keepalive())
	if ka == 0 {
		c.ls.wheel.remove(c)
		return
	}
	at := ceilSecond(c.keepaliveDeadline())
	if c.wheelAt == 0 || int64(c.wheelAt) > at {
		c.ls.wheel.add(c, at)
	}
}

// keepaliveDeadline is when the connection is closed if silent, in unix ms.
func (c *conn) keepaliveDeadline() int64 {
	return c.lastIn + int64(c.client.Keepalive())*1500
}

// ceilSecond rounds unix milliseconds up to the wheel's second.
func ceilSecond(ms int64) int64 { return (ms + 999) / 1000 }

// expire is called by the wheel when a deadline's second has come: close the
// connection if it has been silent too long, else schedule it again.
// Loop-only.
func (s *Server) expire(c *conn) {
	if c.is(closed) {
		return
	}
	if c.is(lingering) {
		_ = c.gc.Close()
		return
	}
	if !c.client.Connected() {
		s.log.Printf("Client %s: no CONNECT within %s, closing.", c.RemoteAddr(), s.cfg.ConnectTimeout)
		_ = c.gc.Close()
		return
	}
	if c.client.Keepalive() == 0 {
		return
	}
	deadline := c.keepaliveDeadline()
	if now := time.Now().UnixMilli(); now >= deadline && c.is(held|parked) && c.unread() {
		// Held back, or parked for an auth answer, it is not silent: what
		// it sent (a PINGREQ, say) waits unread until the queue it
		// publishes to drains or the answer comes.
		c.lastIn = now
		deadline = c.keepaliveDeadline()
	}
	if time.Now().UnixMilli() >= deadline {
		s.log.Printf("Client %s has exceeded timeout, disconnecting.", c.client.ID())
		c.client.Kick(codec.KeepAliveTimeout)
		return
	}
	c.ls.wheel.add(c, ceilSecond(deadline))
}

// drain moves queued messages into out, within a per-turn budget; a
// connection whose socket is backed up waits (stalled) for the tick to retry.
func (c *conn) drain(out *session.Output) error {
	if c.gc.OutboundBuffered() > highWater {
		c.stall()
		_, err := c.client.Drain(out, 0)
		return c.yielded(err)
	}
	more, err := c.client.Drain(out, drainBudget)
	if err == session.ErrYielded {
		return c.yielded(err)
	}
	if more && err == nil {
		if c.gc.OutboundBuffered()+out.Len() > highWater {
			c.stall()
		} else {
			c.ls.wake(c) // let other connections have a turn, then go on
		}
	}
	return err
}

// yielded handles session.ErrYielded: a takeover waits for the connection
// to yield its session. Once what it sent before is handled, it yields and
// is parked: read no more, only drained until the takeover closes it.
// Other errors are returned as they are. Loop-only.
func (c *conn) yielded(err error) error {
	if err != session.ErrYielded {
		return err
	}
	if c.ls.waking && !c.is(paused|parked) {
		// Woken for the takeover before the loop has read what the
		// client sent earlier: its read event comes next (level-
		// triggered), and handles that first.
		if n, e := unix.IoctlGetInt(c.gc.Fd(), unix.SIOCINQ); e == nil && n > 0 {
			return nil
		}
	}
	if !c.client.Yield() {
		return nil // the takeover was given up: it goes on
	}
	c.set(parked, true)
	if !c.is(paused) && c.gc.PauseRead() == nil {
		c.set(paused, true)
	}
	return nil
}

// flush writes the turn's output with one writev. gnet copies what the
// socket does not take at once, so the buffers are reusable right after.
func (c *conn) flush(out *session.Output) {
	out.FlushForwards() // a cluster's forwards: one batch per node per turn
	if out.Empty() {
		return
	}
	if c.is(secure) {
		c.writeTLS(out)
		return
	}
	if c.is(webSocket) {
		c.writeWebSocket(out)
		return
	}
	c.stats().BytesSent.Add(int64(out.Len()))
	_, _ = c.gc.Writev(out.Vectors())
	out.Done()
}

func (s *Server) logClose(c *conn, err error) {
	var d *session.Disconnect
	var ce *codec.Error
	switch {
	case errors.Is(err, session.ErrClosed):
	case errors.As(err, &ce):
		s.log.Printf("Client %s from %s: bad packet: %v, disconnecting.", c.clientName(), c.RemoteAddr(), err)
	case errors.As(err, &d):
		s.log.Printf("Client %s from %s: %v.", c.clientName(), c.RemoteAddr(), err)
	default:
		s.log.Printf("Client %s from %s: %v.", c.clientName(), c.RemoteAddr(), err)
	}
}

func (c *conn) clientName() string {
	if id := c.client.ID(); id != "" {
		return id
	}
	return "<unknown>"
}

// connectLevel reads the protocol level of a CONNECT frame that failed to
// decode, so the refusal is sent in that version's form (0 if unreadable).
func connectLevel(frame []byte) byte {
	i := 1
	for i < len(frame) && i < 5 && frame[i]&0x80 != 0 {
		i++
	}
	i++ // past the last length byte
	if i+2 > len(frame) {
		return 0
	}
	n := int(frame[i])<<8 | int(frame[i+1])
	i += 2 + n
	if i >= len(frame) {
		return 0
	}
	return frame[i]
}
