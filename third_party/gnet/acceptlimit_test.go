//go:build linux

// Test of midge's patch: accept errors that leave the listener usable
// (PATCHES.md).

package gnet

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type openServer struct {
	BuiltinEventEngine
	eng    Engine
	booted chan struct{}
	opened chan struct{}
}

func (s *openServer) OnBoot(eng Engine) Action { s.eng = eng; close(s.booted); return None }

func (s *openServer) OnOpen(Conn) ([]byte, Action) {
	s.opened <- struct{}{}
	return nil, None
}

// TestAcceptOutOfDescriptors: an accept that fails for want of a file
// descriptor (EMFILE) leaves the engine running, and the connection waiting
// in the listen queue is accepted once descriptors are free again, for both
// accept paths (a listener per loop with SO_REUSEPORT, or one accepting
// reactor). Upstream took any such error for a broken listener and shut the
// whole engine down: a broker at its open-files limit stopped.
func TestAcceptOutOfDescriptors(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		s := &openServer{booted: make(chan struct{}), opened: make(chan struct{}, 4)}
		done := make(chan error, 1)
		go func() { done <- Run(s, "tcp://127.0.0.1:0", WithReusePort(reuse)) }()
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
		// OnBoot comes before the loops are made: one connection opened
		// shows them running.
		warm, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.opened:
		case err := <-done:
			t.Fatal(err)
		case <-time.After(5 * time.Second):
			t.Fatal("the engine did not start")
		}
		defer warm.Close() // open till the end: no descriptor freed meanwhile

		// Every descriptor taken but one, which the client's socket takes:
		// the engine's accept finds none left.
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		low := lim
		low.Cur = 256
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
			t.Fatal(err)
		}
		var fill []int
		release := func() {
			for _, fd := range fill {
				unix.Close(fd)
			}
			fill = nil
			_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
		}
		for {
			fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				if err != unix.EMFILE {
					release()
					t.Fatal(err)
				}
				break
			}
			fill = append(fill, fd)
		}
		unix.Close(fill[len(fill)-1])
		fill = fill[:len(fill)-1]
		nc, err := net.Dial("tcp", addr)
		if err != nil { // reset: the listener closed already
			release()
			t.Fatalf("reuseport %v: dial: %v (the engine stopped at EMFILE?)", reuse, err)
		}
		select {
		case err := <-done:
			release()
			t.Fatalf("reuseport %v: the engine stopped at EMFILE: %v", reuse, err)
		case <-s.opened:
			release()
			t.Fatalf("reuseport %v: accepted with no descriptor free", reuse)
		case <-time.After(300 * time.Millisecond): // it has met EMFILE meanwhile (or, on a slow machine, will not: then the test passes without telling)
		}
		release()
		select {
		case <-s.opened:
		case err := <-done:
			t.Fatalf("reuseport %v: the engine stopped at EMFILE: %v", reuse, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("reuseport %v: the queued connection was not accepted once descriptors were free", reuse)
		}
		nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.eng.Stop(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		<-done
	}
}
