package loop

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/session"
)

// testBroker is a broker served on 127.0.0.1 on a port the kernel picks.
type testBroker struct {
	Broker *session.Broker
	Server *Server
	Addr   string // host:port
	logs   *syncBuffer
}

// syncBuffer collects the broker's log lines for assertions.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startBroker starts a broker with opts (nil: defaults) and stops it when the
// test ends. cfg may adjust the server configuration.
func startBroker(t testing.TB, opts *session.Options, cfg ...func(*Config)) *testBroker {
	t.Helper()
	logs := &syncBuffer{}
	logger := log.New(logs, "", log.Lmicroseconds)
	o := session.DefaultOptions()
	if opts != nil {
		o = *opts
	}
	o.Logger = logger
	b := session.NewBroker(o)
	c := Config{Listeners: []string{"127.0.0.1:0"}, Loops: 2, Logger: logger}
	for _, f := range cfg {
		f(&c)
	}
	srv := New(b, c)
	if err := srv.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	tb := &testBroker{Broker: b, Server: srv, Addr: srv.Addrs()[0].String(), logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", logs.String())
		}
	})
	return tb
}

// dial opens a raw TCP connection to the broker.
func (tb *testBroker) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", tb.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestHarnessStartStop(t *testing.T) {
	tb := startBroker(t, nil)
	c := tb.dial(t)
	// CONNECT v3.1.1, clean session, keepalive 0, client id "h".
	if _, err := c.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 1, 'h'}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if !bytes.Equal(buf, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("CONNACK = % x, want 20 02 00 00", buf)
	}
}
