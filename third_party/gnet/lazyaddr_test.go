//go:build linux

// Test of midge's patch: the lazy remote address (PATCHES.md).

package gnet

import (
	"context"
	"net"
	"os"
	"testing"
	"time"
)

type addrServer struct {
	BuiltinEventEngine
	eng    Engine
	booted chan struct{}
	seen   chan string // the remote address, asked for in OnOpen
	closed chan string // the same, asked for in OnClose
}

func (s *addrServer) OnBoot(eng Engine) Action { s.eng = eng; close(s.booted); return None }

func (s *addrServer) OnOpen(c Conn) ([]byte, Action) {
	s.seen <- c.RemoteAddr().String()
	return nil, None
}

func (s *addrServer) OnClose(c Conn, _ error) Action {
	if a := c.RemoteAddr(); a != nil {
		s.closed <- a.String()
	} else {
		s.closed <- "<nil>"
	}
	return None
}

// TestLazyRemoteAddr: an accepted connection's remote address, asked of the
// socket (getpeername(2)) when wanted, is the peer's address, in OnOpen and
// still in OnClose after the peer closed, for both accept paths (a listener
// per loop with SO_REUSEPORT, or one accepting reactor) and each family
// (IPv4, IPv6, a Unix socket, whose client is unnamed: "").
func TestLazyRemoteAddr(t *testing.T) {
	tests := []struct {
		network, addr string
		reuse         bool
	}{
		{"tcp", "127.0.0.1:0", true},
		{"tcp", "127.0.0.1:0", false},
		{"tcp6", "[::1]:0", true},
		{"unix", "", false},
	}
	for _, tt := range tests {
		if tt.network == "tcp6" {
			if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
				t.Logf("no IPv6 loopback here: %v", err)
				continue
			} else {
				ln.Close()
			}
		}
		if tt.network == "unix" {
			tt.addr = t.TempDir() + "/s"
		}
		reuse := tt.reuse
		s := &addrServer{booted: make(chan struct{}), seen: make(chan string, 1), closed: make(chan string, 1)}
		done := make(chan error, 1)
		go func() { done <- Run(s, tt.network+"://"+tt.addr, WithReusePort(reuse)) }()
		select {
		case <-s.booted:
		case err := <-done:
			t.Fatal(err)
		}
		fd, err := s.eng.Dup()
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "listener")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		nc, err := net.Dial(tt.network, addr)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-s.seen:
			if got != nc.LocalAddr().String() {
				t.Errorf("%s, reuseport %v: RemoteAddr %q, want the peer's %q", tt.network, reuse, got, nc.LocalAddr())
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no OnOpen")
		}
		want := nc.LocalAddr().String()
		nc.Close()
		select {
		case got := <-s.closed:
			if got != want {
				t.Errorf("%s, reuseport %v: RemoteAddr in OnClose %q, want the peer's %q", tt.network, reuse, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no OnClose")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.eng.Stop(ctx)
		cancel()
		<-done
	}
}
