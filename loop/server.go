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
	// Nagle leaves Nagle's algorithm on (set_tcp_nodelay false); by
	// default TCP_NODELAY is set, since writes are already batched per turn.
	Nagle bool
	// WSHeaderLimit bounds a WebSocket opening handshake
	// (websockets_headers_size; 0: 8 KiB).
	WSHeaderLimit int
	Logger        *log.Logger
}

// Listener is one listening socket and what it decides about its clients.
type Listener struct {
	Addr           string          // host:port; port 0 picks one
	MaxConnections int             // max_connections (0: unlimited)
	Policy         *session.Policy // nil: the broker's options
	// TLS serves the listener over TLS, on the loops (tls.go). nil: plain TCP.
	TLS *tls.Config
	// WebSocket is `protocol websockets`: MQTT over WebSocket (websocket.go).
	WebSocket bool
	// HTTPDir is http_dir: a WebSocket listener answers plain HTTP GETs
	// with the files of this directory.
	HTTPDir string
	// Network is "tcp4" or "tcp6" to listen on one IP version only
	// (socket_domain), or "unix" for a Unix domain socket whose path is
	// Addr; "" is "tcp".
	Network string
	// SubjectIdentity makes a TLS client certificate's whole subject
	// (RFC 2253, "CN=x,O=y") its identity rather than its common name
	// (use_subject_as_username).
	SubjectIdentity bool
}

func (l *Listener) network() string {
	if l.Network == "" {
		return "tcp"
	}
	return l.Network
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
	started chan struct{} // closed at the first tick: every loop's listener is bound
	tickOne sync.Once
	done    chan struct{}
	runErr  error
	addrs   []net.Addr
	lns     map[string]*listener // by the address as configured (resolved), as gnet's LocalAddr shows it
	only    *listener            // the listener, when there is one
	served  []*listener          // every listener, in the order of addrs; set by Start
	conns   atomic.Int64
	closing atomic.Bool

	// tlsTokens bound the handshakes computing at once (tls.go), so that a
	// handshake flood leaves the loops CPU.
	tlsTokens chan struct{}

	mu    sync.Mutex
	loops map[gnet.EventLoop]*loopState
	nudge chan struct{} // a loop has stalled connections: tick fast (ticker.go)
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
	ws      map[*conn]*wsStream // the streams of its WebSocket connections
	tick    gnet.RunnableFunc   // onTick, made once
	stalled []*conn
	waking  bool // serving woken connections (serveReady), not a read event
	// retrying is set while stalled is not empty, for the ticker to know
	// which loops need the fast retry tick (ticker.go). Any goroutine.
	retrying atomic.Bool
	ticks    atomic.Uint32 // onTick runs, for tests of what an idle broker does

	// TLS connections' state and the loop's TLS scratch (tls.go).
	tls                             map[*conn]*tlsConn
	tlsFeed                         tlsFeed
	tlsIn, tlsOut, tlsPlain, tlsRaw []byte
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
		broker:  broker,
		cfg:     cfg,
		log:     cfg.Logger,
		started: make(chan struct{}),
		done:    make(chan struct{}),
		loops:   make(map[gnet.EventLoop]*loopState),
		nudge:   make(chan struct{}, 1),
		// One core's worth fewer than the loops have, and at least one.
		tlsTokens: make(chan struct{}, max(1, cfg.Loops-1)),
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
	byIndex := make([]*listener, len(all))
	for i, l := range all {
		if l.Network == "unix" {
			if err := clearStaleSocket(l.Addr); err != nil {
				return fmt.Errorf("loop: listener %s: %w", l.Addr, err)
			}
		}
		if l.TLS != nil {
			// Full-size records from the first byte: crypto/tls's small
			// first records help browsers, not MQTT batches.
			l.TLS = l.TLS.Clone()
			l.TLS.DynamicRecordSizingDisabled = true
		}
		if l.Network == "unix" { // gnet turns SO_REUSEPORT off for every listener then
			ln := &listener{Listener: l}
			if s.lns[l.Addr] != nil {
				return fmt.Errorf("loop: listener %s given twice", l.Addr)
			}
			s.lns[l.Addr], s.only = ln, ln
			byIndex[i] = ln
			protoAddrs = append(protoAddrs, "unix://"+l.Addr)
			continue
		}
		if s.cfg.ReusePort {
			addr, err := probeFree(l.network(), l.Addr)
			if err != nil {
				return fmt.Errorf("loop: listener %s: %w", l.Addr, err)
			}
			l.Addr = addr // port 0: every loop's socket must bind the port picked here
			all[i].Addr = addr
		}
		ta, err := net.ResolveTCPAddr(l.network(), l.Addr)
		if err != nil {
			return fmt.Errorf("loop: listener %s: %w", l.Addr, err)
		}
		if s.lns[ta.String()] != nil {
			return fmt.Errorf("loop: listener %s given twice", l.Addr)
		}
		ln := &listener{Listener: l}
		s.lns[ta.String()], s.only = ln, ln
		byIndex[i] = ln
		protoAddrs = append(protoAddrs, l.network()+"://"+l.Addr)
	}
	if len(protoAddrs) > 1 {
		s.only = nil
	}
	go func() {
		defer close(s.done)
		s.runErr = gnet.Rotate(s, protoAddrs,
			gnet.WithNumEventLoop(s.cfg.Loops),
			gnet.WithLoadBalancing(gnet.LeastConnections),
			gnet.WithTicker(true), // only to learn when every loop is bound (OnTick)
			gnet.WithTCPNoDelay(noDelay(s.cfg.Nagle)),
			gnet.WithReuseAddr(true),
			gnet.WithReusePort(s.cfg.ReusePort),
			gnet.WithLogger(quietLogger{s.log}),
		)
	}()
	// gnet calls OnBoot before it binds each loop's SO_REUSEPORT socket,
	// and starts the ticker once all are bound: Start returns after the
	// first tick, so that what follows (dropping privileges: the kernel
	// shares a port only among sockets of one user) finds them bound.
	select {
	case <-s.started:
	case <-s.done:
		return fmt.Errorf("loop: %w", s.runErr)
	}
	for _, l := range all {
		addr, err := s.listenerAddr(l)
		if err != nil {
			return err
		}
		s.addrs = append(s.addrs, addr)
	}
	s.served = byIndex
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
func probeFree(network, addr string) (string, error) {
	ln, err := net.Listen(network, addr)
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

// clearStaleSocket removes a Unix socket file that nobody listens on (left
// by a broker that did not stop cleanly), so that the path can be bound. A
// socket someone answers on, or a file that is not a socket, is an error.
func clearStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	return os.Remove(path)
}

func noDelay(nagle bool) gnet.TCPSocketOpt {
	if nagle {
		return gnet.TCPDelay
	}
	return gnet.TCPNoDelay
}

// Addrs are the listeners' bound addresses (the real port when 0 was asked).
func (s *Server) Addrs() []net.Addr { return s.addrs }

// listenerAddr finds the bound address of a listener through a dup of its fd.
func (s *Server) listenerAddr(l Listener) (net.Addr, error) {
	a, network := l.Addr, "tcp" // gnet names tcp4 and tcp6 listeners "tcp" once open
	if l.Network == "unix" {
		network = "unix"
	}
	fd, err := s.eng.DupListener(network, a)
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
	// Connected clients are told (v5: DISCONNECT 0x8B); a connection that
	// has not sent its CONNECT yet is closed with the loops.
	s.broker.KickAll(codec.ServerShuttingDown)
	// Give the kicks a moment to be written before the sockets close.
	deadline := time.Now().Add(200 * time.Millisecond)
	for s.conns.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	err := s.eng.Stop(ctx)
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
	go s.runTicker()
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

// OnTick is called once gnet has bound every loop's listener and started
// the loops: Start waits for it (see there). The server's own ticker does
// the periodic work, so gnet's sleeps for a day after that.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	s.tickOne.Do(func() { close(s.started) })
	return 24 * time.Hour, gnet.None
}

// quietLogger routes gnet's logs to the broker's logger.
type quietLogger struct{ l *log.Logger }

func (q quietLogger) Debugf(string, ...any)     {}
func (q quietLogger) Infof(string, ...any)      {}
func (q quietLogger) Warnf(f string, a ...any)  { q.l.Printf("gnet: "+f, a...) }
func (q quietLogger) Errorf(f string, a ...any) { q.l.Printf("gnet: "+f, a...) }
func (q quietLogger) Fatalf(f string, a ...any) { q.l.Fatalf("gnet: "+f, a...) }
