package loop

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// gnet has no TLS (see shared/notes/gnet.md), so TLS listeners, for MQTT and
// for WebSocket, are served here with crypto/tls and two goroutines per
// connection: a reader that decodes frames and hands them to the same
// session.Client the gnet path uses, and a writer that drains the session
// and writes batches. The rules are those of conn.go: frames refused over the
// max packet size before they are buffered, one drain after each read burst,
// one write per batch, bounded output, keepalive at 1.5x, a CONNECT timeout.

const (
	netReadBuffer = 16 << 10         // a TLS record's plaintext is at most 16 KiB
	writeTimeout  = 60 * time.Second // a client that takes no bytes for this long is dropped
	writerGrace   = 5 * time.Second  // how long a closing reader waits for the last write
)

// netSide is the part of a Server that serves net.Conn listeners. Any
// goroutine; its maps are guarded by mu.
type netSide struct {
	srv    *Server
	mu     sync.Mutex
	lns    map[*listener]net.Listener
	conns  map[*netConn]struct{}
	closed bool
	wg     sync.WaitGroup
	stop   chan struct{} // closed by close: ends the broker ticker
}

// listen opens l's socket and starts accepting on it.
func (n *netSide) listen(s *Server, l *listener) (net.Addr, error) {
	n.mu.Lock()
	if n.lns == nil {
		n.srv, n.stop = s, make(chan struct{})
		n.lns, n.conns = make(map[*listener]net.Listener), make(map[*netConn]struct{})
	}
	n.mu.Unlock()
	ln, err := net.Listen("tcp", l.Addr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.lns[l] = ln
	n.mu.Unlock()
	n.wg.Add(1)
	go n.accept(ln, l)
	return ln.Addr(), nil
}

// tick advances the broker's timers when no gnet engine runs (its OnTick
// does it otherwise).
func (n *netSide) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			n.srv.broker.Tick(now)
		case <-n.stop:
			return
		}
	}
}

func (n *netSide) accept(ln net.Listener, l *listener) {
	defer n.wg.Done()
	s := n.srv
	for {
		raw, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(5 * time.Millisecond) // out of descriptors: let some close
				continue
			}
			return // closed
		}
		s.conns.Add(1)
		if max := l.MaxConnections; l.conns.Add(1) > int64(max) && max > 0 {
			s.log.Printf("Connection from %s refused: max_connections (%d) reached.", raw.RemoteAddr(), max)
			raw.Close()
			l.conns.Add(-1)
			s.conns.Add(-1)
			continue
		}
		c := &netConn{side: n, ln: l, raw: raw, remote: raw.RemoteAddr().String(),
			wake: make(chan struct{}, 1), writerDone: make(chan struct{})}
		c.taken.L = &c.mu
		c.pending, c.writing = &c.outs[0], &c.outs[1]
		c.dec.MaxPacketSize = s.cfg.MaxPacketSize
		if l.WebSocket {
			c.ws = &wsStream{}
		}
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			c.release()
			raw.Close()
			continue
		}
		n.conns[c] = struct{}{}
		n.wg.Add(1)
		n.mu.Unlock()
		go c.serve()
	}
}

// kick asks every client to disconnect (v5: DISCONNECT 0x8B) and closes the
// sockets still in their TLS handshake.
func (n *netSide) kick() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.conns {
		c.mu.Lock()
		cl := c.client
		c.mu.Unlock()
		if cl != nil {
			cl.Kick(codec.ServerShuttingDown)
		} else {
			c.raw.Close()
		}
	}
}

// close stops the listeners, closes every connection, and waits for their
// goroutines within ctx.
func (n *netSide) close(ctx context.Context) error {
	n.mu.Lock()
	if n.lns == nil || n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	close(n.stop)
	for _, ln := range n.lns {
		ln.Close()
	}
	for c := range n.conns {
		c.raw.Close()
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// netConn is one connection of a net.Conn listener. The session.Client is
// touched only under mu, so its methods still run one at a time.
type netConn struct {
	side   *netSide
	ln     *listener
	raw    net.Conn
	nc     net.Conn // raw, or its TLS server side
	remote string
	lastIn time.Time // reader only

	mu       sync.Mutex
	taken    sync.Cond // the writer took pending: the reader may go on
	client   *session.Client
	dec      codec.Decoder
	pkt      codec.Packet
	ws       *wsStream // protocol websockets; nil: MQTT
	outs     [2]session.Output
	pending  *session.Output // the reader's replies and the next drain; under mu
	writing  *session.Output // being written; writer only
	ending   bool            // the reader is done: write pending, then close
	stopping bool            // Close was asked: write pending, then close
	gone     bool            // the writer has stopped

	wake       chan struct{} // capacity 1: the writer has work
	writerDone chan struct{}
	wsOut      wsFramer // writer only
}

// Wake implements session.Transport. Any goroutine.
func (c *netConn) Wake() {
	select {
	case c.wake <- struct{}{}:
	default: // already signalled: one drain takes everything
	}
}

// Close implements session.Transport: write what is queued, then close.
// Any goroutine.
func (c *netConn) Close() {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	c.Wake()
}

// RemoteAddr implements session.Transport.
func (c *netConn) RemoteAddr() string { return c.remote }

// serve runs the connection: TLS handshake, then the reader here and the
// writer on its own goroutine.
func (c *netConn) serve() {
	s := c.side.srv
	defer c.finish()
	connectBy := time.Now().Add(s.cfg.ConnectTimeout)
	c.nc = c.raw
	if c.ln.TLS != nil {
		tc := tls.Server(c.raw, c.ln.TLS)
		_ = tc.SetDeadline(connectBy) // the handshake counts against the CONNECT timeout
		if err := tc.Handshake(); err != nil {
			s.log.Printf("Client <unknown> from %s: TLS handshake failed: %v.", c.remote, err)
			close(c.writerDone)
			return
		}
		_ = tc.SetWriteDeadline(time.Time{})
		c.nc = tc
	}
	c.mu.Lock()
	c.client = s.broker.NewClient(c, c.ln.Policy)
	if tc, ok := c.nc.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			c.client.SetIdentity(certs[0].Subject.CommonName)
		}
	}
	c.mu.Unlock()
	go c.writeLoop()

	err := c.readLoop(connectBy)
	c.mu.Lock()
	c.ending = true
	c.mu.Unlock()
	c.Wake()
	select {
	case <-c.writerDone:
	case <-time.After(writerGrace):
		c.raw.Close() // the client takes no bytes: stop waiting for the last write
		<-c.writerDone
	}
	var reason error
	switch {
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		// the peer closed, or we did after saying why
	case isNetError(err):
		reason = err
	}
	c.mu.Lock()
	if reason == nil && err != nil && !isNetError(err) {
		c.logClose(err)
	}
	c.client.Closed(reason)
	c.mu.Unlock()
}

// finish releases what the connection holds. Runs once, last.
func (c *netConn) finish() {
	c.raw.Close()
	c.release()
	s := c.side.srv
	s.conns.Add(-1)
	c.ln.conns.Add(-1)
	c.side.mu.Lock()
	delete(c.side.conns, c)
	c.side.mu.Unlock()
	c.side.wg.Done()
}

func (c *netConn) release() {
	c.outs[0].Done()
	c.outs[1].Done()
}

// readLoop reads and handles packets until the connection must close. Its
// read deadline is the CONNECT timeout, then 1.5 times the keepalive after the
// last packet [MQTT-3.1.2-24].
func (c *netConn) readLoop(connectBy time.Time) error {
	s := c.side.srv
	buf := make([]byte, 0, netReadBuffer)
	c.lastIn = time.Now()
	for {
		c.mu.Lock()
		connected, ka := c.client.Connected(), c.client.Keepalive()
		c.mu.Unlock()
		var deadline time.Time
		switch {
		case !connected:
			deadline = connectBy
		case ka > 0:
			deadline = c.lastIn.Add(time.Duration(ka) * 1500 * time.Millisecond)
		}
		_ = c.nc.SetReadDeadline(deadline)
		if len(buf) == cap(buf) {
			buf = c.grow(buf)
		}
		n, rerr := c.nc.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			s.broker.Stats.BytesReceived.Add(int64(n))
			buf = buf[:len(buf)+n]
			used, err := c.handle(buf)
			buf = buf[:copy(buf, buf[used:])]
			if err != nil {
				return err
			}
			if len(buf) == 0 && cap(buf) > 4*netReadBuffer {
				buf = make([]byte, 0, netReadBuffer) // don't keep a large packet's buffer
			}
		}
		if rerr == nil {
			continue
		}
		var ne net.Error
		if !errors.As(rerr, &ne) || !ne.Timeout() {
			return rerr
		}
		if !connected {
			s.log.Printf("Client %s: no CONNECT within %s, closing.", c.remote, s.cfg.ConnectTimeout)
			return session.ErrClosed
		}
		s.log.Printf("Client %s has exceeded timeout, disconnecting.", c.client.ID())
		c.client.Kick(codec.KeepAliveTimeout) // the writer sends the v5 DISCONNECT
		return session.ErrClosed
	}
}

// grow makes room in a full buffer for the packet at its start, whose size
// handlePackets has already checked against the max packet size. WebSocket
// payloads are streamed into wsStream, so only MQTT needs this.
func (c *netConn) grow(buf []byte) []byte {
	need := 2 * cap(buf)
	if total, err := codec.FrameSize(buf[:min(5, len(buf))], c.dec.MaxPacketSize); err == nil && total > len(buf) {
		need = total
	}
	nb := make([]byte, len(buf), need)
	copy(nb, buf)
	return nb
}

// handle decodes what b holds and hands it to the session, then asks the
// writer to drain: one drain per read burst. It waits while the replies not
// yet taken by the writer are over highWater, so a client that sends without
// reading is slowed down by TCP rather than growing memory.
func (c *netConn) handle(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.pending.Len() > highWater && !c.gone {
		c.taken.Wait()
	}
	defer c.Wake()
	if c.ws != nil {
		return c.ws.read(b, c, c.pending, c.dec.MaxPacketSize)
	}
	return c.packets(b, c.pending)
}

// packets implements packetSink. Runs on the reader, under mu.
func (c *netConn) packets(b []byte, out *session.Output) (int, error) {
	n, handled, err := handlePackets(c.client, &c.dec, &c.pkt, b, out)
	if handled > 0 {
		c.lastIn = time.Now()
	}
	return n, err
}

// writeLoop drains the session when woken and writes each batch with one
// flush of a TLS-record-sized buffer.
func (c *netConn) writeLoop() {
	bw := bufio.NewWriterSize(c.nc, netReadBuffer)
	var ctl []byte
	defer func() {
		c.mu.Lock()
		c.gone = true
		c.taken.Broadcast()
		c.mu.Unlock()
		c.nc.Close()
		close(c.writerDone)
	}()
	for range c.wake {
		c.mu.Lock()
		last := c.ending || c.stopping
		budget := drainBudget
		if last {
			budget = 0 // only a pending kick
		}
		more, err := c.client.Drain(c.pending, budget)
		c.pending, c.writing = c.writing, c.pending
		if c.ws != nil {
			ctl, c.ws.ctl = c.ws.ctl, ctl[:0]
		}
		if err != nil && !last {
			c.logClose(err)
		}
		c.taken.Broadcast()
		c.mu.Unlock()

		werr := c.write(bw, ctl, c.writing)
		c.writing.Done()
		if err != nil || werr != nil || last {
			return
		}
		if more {
			c.Wake()
		}
	}
}

// write sends control frames and one batch (one binary frame on WebSocket).
func (c *netConn) write(bw *bufio.Writer, ctl []byte, out *session.Output) error {
	if len(ctl) == 0 && out.Empty() {
		return nil
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = bw.Write(ctl)
	if !out.Empty() {
		c.side.srv.broker.Stats.BytesSent.Add(int64(out.Len()))
		var vecs [][]byte
		if c.ws != nil {
			vecs = c.wsOut.frame(out)
		} else {
			vecs = out.Vectors()
		}
		for _, v := range vecs {
			_, _ = bw.Write(v)
		}
		c.wsOut.release()
	}
	return bw.Flush()
}

// logClose logs why the connection closes. Called under mu.
func (c *netConn) logClose(err error) {
	if errors.Is(err, session.ErrClosed) {
		return
	}
	name := "<unknown>"
	if c.client != nil && c.client.ID() != "" {
		name = c.client.ID()
	}
	var ce *codec.Error
	if errors.As(err, &ce) {
		c.side.srv.log.Printf("Client %s from %s: bad packet: %v, disconnecting.", name, c.remote, err)
		return
	}
	c.side.srv.log.Printf("Client %s from %s: %v.", name, c.remote, err)
}

// isNetError reports whether err came from the socket rather than from the
// protocol.
func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, net.ErrClosed)
}
