package bench

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

func TestConnectFrame(t *testing.T) {
	for _, tc := range []struct {
		name       string
		version    byte
		n          int
		id         string
		user, pass string
	}{
		{"v31", codec.Version31, 42, "conns-abcdef-0000042", "", ""},
		{"v311", codec.Version311, 1234567, "conns-abcdef-1234567", "", ""},
		{"v5 wraps", codec.Version5, 12345678, "conns-abcdef-2345678", "", ""},
		{"v311 with credentials", codec.Version311, 7, "conns-abcdef-0000007", "user", "pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newConnectFrame("conns-abcdef-", tc.version, 30, tc.user, tc.pass)
			f.number(tc.n)
			var p codec.Packet
			d := codec.Decoder{Version: tc.version}
			n, err := d.Decode(f.b, &p)
			if err != nil || n != len(f.b) {
				t.Fatalf("decode: n=%d of %d, err=%v", n, len(f.b), err)
			}
			if string(p.Connect.Username) != tc.user || string(p.Connect.Password) != tc.pass {
				t.Fatalf("credentials %q %q", p.Connect.Username, p.Connect.Password)
			}
			if p.Type != codec.CONNECT || string(p.Connect.ClientID) != tc.id || p.Connect.KeepAlive != 30 || !p.Connect.CleanStart {
				t.Fatalf("decoded %v id %q keepalive %d", p.Type, p.Connect.ClientID, p.Connect.KeepAlive)
			}
			if len(tc.id) > 23 {
				t.Fatalf("client id %q is longer than 3.1 allows", tc.id)
			}
		})
	}
}

// TestStormOpen opens connections with every protocol level and several
// loop and window shapes, and checks that each is a live MQTT session.
func TestStormOpen(t *testing.T) {
	host, port := startBroker(t)
	for _, tc := range []struct {
		name    string
		version byte
		loops   int
		window  int
		n       int
	}{
		{"v311 one loop, window 1", codec.Version311, 1, 1, 20},
		{"v31 two loops", codec.Version31, 2, 8, 150},
		{"v5 more loops than needed", codec.Version5, 4, 64, 3},
		{"v311 wide window", codec.Version311, 2, 128, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newStorm(host, port, tc.version, "storm-"+strconv.Itoa(tc.loops)+"-")
			if err != nil {
				t.Fatal(err)
			}
			s.window = tc.window
			fds, err := s.open(context.Background(), 0, tc.n, tc.loops)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer closeAll(fds)
			if len(fds) != tc.n {
				t.Fatalf("%d connections, want %d", len(fds), tc.n)
			}
			if err := pingAll(fds); err != nil {
				t.Fatal(err)
			}
			for _, fd := range fds {
				if got := readWithin(t, fd, 2, 5*time.Second); got != "\xd0\x00" {
					t.Fatalf("fd %d: got % x, want a PINGRESP", fd, got)
				}
			}
			if n := countClosed(fds); n != 0 {
				t.Fatalf("%d connections closed", n)
			}
		})
	}
}

// readWithin reads n bytes from non-blocking fd, polling until timeout.
func readWithin(t *testing.T, fd, n int, timeout time.Duration) string {
	t.Helper()
	b := make([]byte, 0, n)
	deadline := time.Now().Add(timeout)
	for len(b) < n && time.Now().Before(deadline) {
		k, err := syscall.Read(fd, b[len(b):n])
		if err == syscall.EAGAIN {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil || k == 0 {
			t.Fatalf("fd %d: read: %d, %v", fd, k, err)
		}
		b = b[:len(b)+k]
	}
	return string(b)
}

// TestStormErrors checks that a broker that refuses, hangs up or answers
// with something else fails the storm with a clear error, and that no
// descriptor is left open.
func TestStormErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply []byte // nil: close at once
		err   string
	}{
		{"closed before CONNACK", nil, "waiting for CONNACK"},
		{"refused", []byte{0x20, 2, 0, 5}, "refused: code 5"},
		{"not a CONNACK", []byte{0xd0, 0}, "want CONNACK"},
		{"trailing bytes", []byte{0x20, 2, 0, 0, 0xd0, 0}, "after the CONNACK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go serveReply(ln, tc.reply)
			fds0 := openFDs(t)
			s, err := newStorm("127.0.0.1", ln.Addr().(*net.TCPAddr).Port, codec.Version311, "e-")
			if err != nil {
				t.Fatal(err)
			}
			s.window, s.timeout = 4, 5*time.Second
			fds, err := s.open(context.Background(), 0, 10, 2)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				closeAll(fds)
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			// The server's ends close as they see the storm's close.
			deadline := time.Now().Add(5 * time.Second)
			for openFDs(t) > fds0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := openFDs(t); n > fds0 {
				t.Fatalf("%d descriptors open after the storm failed, %d before", n, fds0)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		s, _ := newStorm("127.0.0.1", port, codec.Version311, "e-")
		if _, err := s.open(context.Background(), 0, 5, 1); err == nil ||
			!strings.Contains(err.Error(), "refused") {
			t.Fatalf("err = %v", err)
		}
	})
}

// serveReply reads each connection's CONNECT and answers with reply, or
// closes at once when reply is nil.
func serveReply(ln net.Listener, reply []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if reply == nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := readFrame(c, nil); err == nil {
				_, _ = c.Write(reply)
				var b [1]byte
				_, _ = c.Read(b[:]) // until the storm closes it
			}
		}()
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}
