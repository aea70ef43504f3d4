// Package loop is midge's reactor: the gnet event handler that owns the
// sockets, decodes frames in place, runs each connection's session.Client,
// batches writes, and keeps per-loop timers. It is the only package that
// imports gnet.
//
// Methods are marked "loop-only" (must run on the event loop that owns the
// connection) or "any goroutine".
package loop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"iter"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// Config configures a Server.
type Config struct {
	// Listen are the listeners with their own settings.
	Listen []Listener
	// Listeners is a shorthand for listeners with default settings:
	// host:port addresses ("127.0.0.1:1883"; port 0 picks one).
	Listeners []string
	// Loops is the number of event loops (0: one per CPU).
	Loops int
	// MaxPacketSize refuses larger inbound frames before buffering them (0: protocol limit).
	MaxPacketSize int
	// MaxConnections is the limit of the Listeners shorthand (0: unlimited).
	MaxConnections int
	// ConnectTimeout closes sockets that send no CONNECT in time (0: 10s).
	ConnectTimeout time.Duration
	// ReusePort gives each event loop its own SO_REUSEPORT listening
	// socket, so that the kernel spreads accepts over the loops (a faster
	// connect rate than one accepting goroutine). Each address is first
	// bound without SO_REUSEPORT (see probeFree), so that a port in use
	// still fails to start rather than being shared with another process.
	ReusePort bool
	Logger    *log.Logger
}

// Listener is one listening socket and what it decides about its clients.
type Listener struct {
	Addr           string          // host:port; port 0 picks one
	MaxConnections int             // max_connections (0: unlimited)
	Policy         *session.Policy // nil: the broker's options
	// TLS serves the listener over TLS, on the net.Conn path (netconn.go):
	// gnet has no TLS. nil: plain TCP on gnet.
	TLS *tls.Config
	// WebSocket is `protocol websockets`: MQTT over WebSocket (websocket.go).
	WebSocket bool
}

// listener is a Listener while serving. conns is touched by every loop.
type listener struct {
	Listener
	conns atomic.Int64
}

// Tuning of write batching and back-pressure.
const (
	drainBudget = 256 << 10 // bytes moved from a session queue per turn
	highWater   = 1 << 20   // socket backlog above which a connection stops draining
	readBudget  = 64 << 10  // bytes of frames handled per connection per turn, for fairness
	holdLimit   = 1 << 20   // unread bytes a held-back publisher may leave in its inbound buffer
	tickEvery   = 20 * time.Millisecond
)

// Server runs a broker's connections on gnet event loops.
type Server struct {
	gnet.BuiltinEventEngine

	broker *session.Broker
	cfg    Config
	log    *log.Logger

	eng     gnet.Engine
	booted  chan struct{}
	done    chan struct{}
	runErr  error
	addrs   []net.Addr
	lns     map[string]*listener // by the address as configured (resolved), as gnet's LocalAddr shows it
	only    *listener            // the listener, when there is one
	conns   atomic.Int64
	closing atomic.Bool

	mu        sync.Mutex
	loops     map[gnet.EventLoop]*loopState
	nets      netSide // TLS listeners (netconn.go)
	noEngine  bool    // every listener is on nets: gnet is not run
	lastSweep time.Time
}

// loopState is what one event loop owns: scratch buffers shared by the
// connections it serves, and its timing wheel. Loop-only, except that the
// Server's map of loops is guarded by Server.mu.
type loopState struct {
	srv     *Server
	el      gnet.EventLoop
	ready   readyList
	out     session.Output
	pkt     codec.Packet
	dec     codec.Decoder // scratch: each conn keeps only its Version (conn.decoder)
	wheel   wheel
	conns   connList
	ws      map[*conn]*wsStream // the streams of its WebSocket connections
	tick    gnet.RunnableFunc   // onTick, made once: an idle broker ticks 50 times a second
	stalled []*conn
}

// connList is a loop's connections, linked through the conns themselves:
// cheaper per connection than a set. Loop-only.
type connList struct{ head *conn }

func (l *connList) push(c *conn) {
	c.prev, c.next = nil, l.head
	if l.head != nil {
		l.head.prev = c
	}
	l.head = c
}

func (l *connList) remove(c *conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if l.head == c {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
}

// all yields every connection of the list; yield may remove the one it is given.
func (l *connList) all() iter.Seq[*conn] {
	return func(yield func(*conn) bool) {
		for c := l.head; c != nil; {
			next := c.next
			if !yield(c) {
				return
			}
			c = next
		}
	}
}

// New makes a server for broker.
func New(broker *session.Broker, cfg Config) *Server {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.NumCPU()
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(os.Stderr, "", log.LstdFlags)
	}
	// The decoder refuses what the CONNACK's Maximum Packet Size (the
	// broker's max_packet_size) forbids: DISCONNECT 0x95 [MQTT-3.2.2-15].
	if max := broker.Options().MaxPacketSize; max > 0 && (cfg.MaxPacketSize <= 0 || max < cfg.MaxPacketSize) {
		cfg.MaxPacketSize = max
	}
	return &Server{
		broker: broker,
		cfg:    cfg,
		log:    cfg.Logger,
		booted: make(chan struct{}),
		done:   make(chan struct{}),
		loops:  make(map[gnet.EventLoop]*loopState),
	}
}

// Start runs the event loops in the background and returns once the
// listeners are open (or failed to open). Any goroutine.
func (s *Server) Start() error {
	all := append([]Listener(nil), s.cfg.Listen...)
	for _, a := range s.cfg.Listeners {
		all = append(all, Listener{Addr: a, MaxConnections: s.cfg.MaxConnections})
	}
	if len(all) == 0 {
		return errors.New("loop: no listeners")
	}
	s.lns = make(map[string]*listener, len(all))
	var protoAddrs []string
	netAddrs := make(map[int]net.Addr)
	for i, l := range all {
		if l.TLS != nil { // served by netSide, not gnet
			addr, err := s.nets.listen(s, &listener{Listener: l})
			if err != nil {
				_ = s.nets.close(context.Background())
				return fmt.Errorf("loop: listener %s: %w", l.Addr, err)
			}
			netAddrs[i] = addr
			continue
		}
		if s.cfg.ReusePort {
			addr, err := probeFree(l.Addr)
			if err != nil {
				return fmt.Errorf("loop: listener %s: %w", l.Addr, err)
			}
			l.Addr = addr // port 0: every loop's socket must bind the port picked here
			all[i].Addr = addr
		}
		ta, err := net.ResolveTCPAddr("tcp", l.Addr)
		if err != nil {
			return fmt.Errorf("loop: listener %s: %w", l.Addr, err)
		}
		if s.lns[ta.String()] != nil {
			return fmt.Errorf("loop: listener %s given twice", l.Addr)
		}
		ln := &listener{Listener: l}
		s.lns[ta.String()], s.only = ln, ln
		protoAddrs = append(protoAddrs, "tcp://"+l.Addr)
	}
	if len(protoAddrs) > 1 {
		s.only = nil
	}
	if len(protoAddrs) == 0 {
		s.noEngine = true
		go s.nets.tick()
		go func() { <-s.nets.stop; close(s.done) }()
		s.addrs = make([]net.Addr, len(all))
		for i, a := range netAddrs {
			s.addrs[i] = a
		}
		return nil
	}
	go func() {
		defer close(s.done)
		s.runErr = gnet.Rotate(s, protoAddrs,
			gnet.WithNumEventLoop(s.cfg.Loops),
			gnet.WithLoadBalancing(gnet.LeastConnections),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithReusePort(s.cfg.ReusePort),
			gnet.WithLogger(quietLogger{s.log}),
		)
	}()
	select {
	case <-s.booted:
	case <-s.done:
		_ = s.nets.close(context.Background())
		return fmt.Errorf("loop: %w", s.runErr)
	}
	for i, l := range all {
		if a := netAddrs[i]; a != nil {
			s.addrs = append(s.addrs, a)
			continue
		}
		addr, err := s.listenerAddr(l.Addr)
		if err != nil {
			return err
		}
		s.addrs = append(s.addrs, addr)
	}
	return nil
}

// probeFree binds addr without SO_REUSEPORT and lets it go again. With
// SO_REUSEPORT alone, a second broker started on a port in use would bind it
// too and silently share the connections; a plain bind fails on a port that
// anyone listens on, SO_REUSEPORT or not, so a second midge fails here (the
// first holds the port). For port 0 it returns the address with the port the
// kernel picked, for every loop to bind. A process that binds the port
// between the probe and the loops' binds is not detected; the kernel lets
// only sockets of the same user share a port with SO_REUSEPORT.
func probeFree(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		ln.Close()
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// Addrs are the listeners' bound addresses (the real port when 0 was asked).
func (s *Server) Addrs() []net.Addr { return s.addrs }

// listenerAddr finds the bound address of a listener through a dup of its fd.
func (s *Server) listenerAddr(a string) (net.Addr, error) {
	fd, err := s.eng.DupListener("tcp", a)
	if err != nil {
		return nil, fmt.Errorf("loop: listener %s: %w", a, err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("loop: listener %s: %w", a, err)
	}
	defer ln.Close()
	return ln.Addr(), nil
}

// Shutdown disconnects every client (v5: DISCONNECT 0x8B, server shutting
// down), flushes, and stops the loops, within ctx. Any goroutine.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		<-s.done
		return nil
	}
	s.mu.Lock()
	for _, ls := range s.loops {
		ls := ls
		_ = ls.el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			for c := range ls.conns.all() {
				c.client.Kick(codec.ServerShuttingDown)
			}
			return nil
		}))
	}
	s.mu.Unlock()
	s.nets.kick()
	// Give the kicks a moment to be written before the sockets close.
	deadline := time.Now().Add(200 * time.Millisecond)
	for s.conns.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	err := s.nets.close(ctx)
	if !s.noEngine {
		err = errors.Join(err, s.eng.Stop(ctx))
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// Wait blocks until the server has stopped and returns why.
func (s *Server) Wait() error {
	<-s.done
	return s.runErr
}

// OnBoot keeps the engine handle. Runs before the loops start.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	close(s.booted)
	return gnet.None
}

// listenerOf finds the listener a connection came in on: gnet reports the
// listener's configured address as the connection's local address.
func (s *Server) listenerOf(gc gnet.Conn) *listener {
	if s.only != nil {
		return s.only
	}
	if ln := s.lns[gc.LocalAddr().String()]; ln != nil {
		return ln
	}
	for _, ln := range s.lns { // not expected; any policy beats none
		return ln
	}
	return nil
}

// loopOf returns the state of a connection's loop, making it on first use.
// Loop-only (for c), takes Server.mu.
func (s *Server) loopOf(el gnet.EventLoop) *loopState {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls := s.loops[el]
	if ls == nil {
		ls = &loopState{srv: s, el: el, ws: make(map[*conn]*wsStream)}
		ls.dec.MaxPacketSize = s.cfg.MaxPacketSize
		ls.ready.run = ls.serveReady
		ls.tick = ls.onTick
		ls.wheel.now = time.Now().Unix()
		s.loops[el] = ls
	}
	return ls
}

// OnTick runs on gnet's ticker goroutine (not a loop): it asks each loop to
// advance its own timers and retry stalled writes, and advances the broker's
// timers itself once a second (they touch no connection).
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now()
	sweep := now.Sub(s.lastSweep) >= time.Second
	if sweep {
		s.lastSweep = now
		s.broker.Tick(now)
	}
	s.mu.Lock()
	for _, ls := range s.loops {
		_ = ls.el.Execute(context.Background(), ls.tick)
	}
	s.mu.Unlock()
	return tickEvery, gnet.None
}

// onTick retries stalled writes and advances the loop's wheel. Loop-only.
func (ls *loopState) onTick(context.Context) error {
	ls.retryStalled()
	// Every tick, not every sweep: advancing within a second is a no-op,
	// and a deadline is then met within a tick of its second rather than
	// up to a second late.
	ls.wheel.advance(time.Now().Unix(), ls.srv.expire)
	return nil
}

// quietLogger routes gnet's logs to the broker's logger.
type quietLogger struct{ l *log.Logger }

func (q quietLogger) Debugf(string, ...any)     {}
func (q quietLogger) Infof(string, ...any)      {}
func (q quietLogger) Warnf(f string, a ...any)  { q.l.Printf("gnet: "+f, a...) }
func (q quietLogger) Errorf(f string, a ...any) { q.l.Printf("gnet: "+f, a...) }
func (q quietLogger) Fatalf(f string, a ...any) { q.l.Fatalf("gnet: "+f, a...) }
