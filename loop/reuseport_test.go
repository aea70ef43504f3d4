package loop

import (
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TestListenerReusePortSecondBrokerRefused starts a broker, then a second
// one on the same port: whichever of them asks for SO_REUSEPORT, the second
// must refuse to start ("address already in use") instead of silently
// sharing the first one's connections, and the first keeps serving.
func TestListenerReusePortSecondBrokerRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ first, second bool }{
		{first: true, second: true},
		{first: true, second: false},
		{first: false, second: true},
	} {
		t.Run(fmt.Sprintf("first %v second %v", tt.first, tt.second), func(t *testing.T) {
			tb := startBroker(t, nil, func(c *Config) { c.ReusePort = tt.first })
			second := New(session.NewBroker(session.DefaultOptions()),
				Config{Listeners: []string{tb.Addr}, Loops: 2, ReusePort: tt.second, Logger: log.New(&syncBuffer{}, "", 0)})
			err := second.Start()
			if err == nil {
				_ = second.Shutdown(t.Context())
				t.Fatalf("second broker on %s started", tb.Addr)
			}
			if !strings.Contains(err.Error(), syscall.EADDRINUSE.Error()) {
				t.Fatalf("second broker: %v, want address already in use", err)
			}
			for i := range 6 { // each connection lands on one of the loops' sockets
				r := tb.raw(t, codec.Version311)
				if ack := r.connect(connectPacket(codec.Version311, fmt.Sprintf("c%d", i), true)); ack.ReasonCode != codec.Success {
					t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
				}
			}
		})
	}
}

// TestListenerReusePortPortZero: with port 0, every loop must bind the one
// port the probe picked (each loop binding ":0" itself would listen on as
// many ports as loops), and that port is the one Addrs reports.
func TestListenerReusePortPortZero(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil, func(c *Config) { c.ReusePort = true; c.Loops = 2 })
	port := tb.Server.Addrs()[0].(*net.TCPAddr).Port
	if port == 0 {
		t.Fatal("Addrs reports port 0")
	}
	if n := listeningSockets(t, port); n != 2 {
		t.Fatalf("%d sockets listen on port %d, want one per loop (2)", n, port)
	}
	// Nothing else may bind it without SO_REUSEPORT while the broker runs.
	if ln, err := net.Listen("tcp", tb.Addr); err == nil {
		ln.Close()
		t.Fatalf("%s could be bound while the broker listens", tb.Addr)
	}
	r := tb.raw(t, codec.Version311)
	if ack := r.connect(connectPacket(codec.Version311, "z", true)); ack.ReasonCode != codec.Success {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
}

// listeningSockets counts the TCP sockets in LISTEN state on 127.0.0.1:port
// (from /proc/net/tcp).
func listeningSockets(t *testing.T, port int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	want := fmt.Sprintf("0100007F:%04X", port)
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == want && f[3] == "0A" {
			n++
		}
	}
	return n
}
