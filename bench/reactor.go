package bench

import (
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// endpoint is the per-connection state of a socket served by the reactor.
// Its methods run on the connection's event loop only.
type endpoint interface {
	traffic(c gnet.Conn) gnet.Action
	closed(err error)
}

// reactor serves the generator's subscribers and acknowledged publishers on
// a few gnet client event loops, instead of a goroutine per connection.
// Connections complete their handshake as plain net.Conns and are enrolled
// afterwards.
type reactor struct {
	gnet.BuiltinEventEngine
	cli     *gnet.Client
	stopped sync.Once
}

func newReactor(loops int) (*reactor, error) {
	r := &reactor{}
	cli, err := gnet.NewClient(r, gnet.WithNumEventLoop(loops), gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(quietLogger{}))
	if err != nil {
		return nil, fmt.Errorf("bench: gnet client: %w", err)
	}
	if err := cli.Start(); err != nil {
		return nil, fmt.Errorf("bench: gnet client: %w", err)
	}
	r.cli = cli
	return r, nil
}

// enroll hands nc over to the reactor; nc is closed and must not be used again.
// Any goroutine.
func (r *reactor) enroll(nc net.Conn, e endpoint) (gnet.Conn, error) {
	c, err := r.cli.EnrollContext(nc, e)
	if err != nil {
		return nil, fmt.Errorf("bench: enroll: %w", err)
	}
	return c, nil
}

// stop closes every enrolled connection and waits for the loops to end.
func (r *reactor) stop() { r.stopped.Do(func() { _ = r.cli.Stop() }) }

func (r *reactor) OnTraffic(c gnet.Conn) gnet.Action {
	return c.Context().(endpoint).traffic(c)
}

func (r *reactor) OnClose(c gnet.Conn, err error) gnet.Action {
	if e, ok := c.Context().(endpoint); ok {
		e.closed(err)
	}
	return gnet.None
}

// connErr remembers the first way a connection ended early.
type connErr struct {
	p    atomic.Pointer[error]
	done atomic.Bool // set when the run closes connections on purpose
}

func (e *connErr) set(err error) {
	if e.done.Load() {
		return
	}
	if err == nil {
		err = errors.New("bench: connection closed by the broker")
	}
	e.p.CompareAndSwap(nil, &err)
}

func (e *connErr) get() error {
	if p := e.p.Load(); p != nil {
		return *p
	}
	return nil
}

// quietLogger keeps gnet's informational lines off stdout (where the
// results go); its errors go to stderr.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(f string, a ...any) {
	log.Printf("bench: gnet: "+f, a...)
}
func (quietLogger) Fatalf(f string, a ...any) {
	log.Fatalf("bench: gnet: "+f, a...)
}
