//go:build linux

// Test of midge's patch: no garbage per accept (PATCHES.md).

package gnet

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/socket"
)

// TestAcceptAllocs: accepting a TCP connection allocates only the peer's
// Sockaddr that the conn keeps (unix.Accept4 also allocated a 112-byte
// RawSockaddrAny per call), and an accept that finds the queue empty
// allocates nothing; accepting without the address (AcceptNoAddr, what the
// loops do since patch 9) allocates nothing either.
func TestAcceptAllocs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File() // a blocking dup
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lfd := int(f.Fd())
	var peers []net.Conn
	defer func() {
		for _, c := range peers {
			c.Close()
		}
	}()
	// Dial first (AllocsPerRun runs its function once more than asked, to
	// warm up): the measured function only accepts, one queued connection
	// each time.
	for i := 0; i < 21+11; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, c)
	}
	var got unix.Sockaddr
	allocs := testing.AllocsPerRun(20, func() {
		nfd, sa, err := socket.Accept(lfd)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(nfd)
		got = sa
	})
	if allocs > 1 {
		t.Errorf("an accept allocates %.1f times, want 1 (the Sockaddr)", allocs)
	}
	if a, ok := got.(*unix.SockaddrInet4); !ok || a.Addr != [4]byte{127, 0, 0, 1} || a.Port == 0 {
		t.Errorf("peer address %#v, want 127.0.0.1 and a port", got)
	}
	noAddr := testing.AllocsPerRun(10, func() {
		nfd, err := socket.AcceptNoAddr(lfd)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(nfd)
	})
	if noAddr > 0 {
		t.Errorf("an accept without the address allocates %.1f times, want 0", noAddr)
	}
	if err := unix.SetNonblock(lfd, true); err != nil {
		t.Fatal(err)
	}
	empty := testing.AllocsPerRun(20, func() {
		if _, _, err := socket.Accept(lfd); err != unix.EAGAIN {
			t.Fatalf("accept on an empty queue: %v, want EAGAIN", err)
		}
	})
	if empty > 0 {
		t.Errorf("an accept that finds the queue empty allocates %.1f times, want 0", empty)
	}
}
