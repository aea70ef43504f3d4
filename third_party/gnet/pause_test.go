//go:build linux

// Tests of midge's patch: Conn.PauseRead / Conn.ResumeRead (PATCHES.md).
// Run from midge's module: go test github.com/panjf2000/gnet/v2

package gnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
)

// pauseServer reads and counts everything; it pauses reading once it has
// got pauseAt bytes, and on pause writes reply (if any) to the client.
type pauseServer struct {
	BuiltinEventEngine
	eng     Engine
	booted  chan struct{}
	pauseAt int64
	reply   []byte

	conn    chan Conn     // the accepted connection
	paused  chan struct{} // closed on pause
	closed  chan struct{} // closed by OnClose
	got     atomic.Int64
	traffic atomic.Int64 // OnTraffic calls
}

func (s *pauseServer) OnBoot(eng Engine) Action { s.eng = eng; close(s.booted); return None }

func (s *pauseServer) OnOpen(c Conn) ([]byte, Action) {
	_ = c.SetReadBuffer(32 << 10) // a small window, so the sender stalls soon
	s.conn <- c
	return nil, None
}

func (s *pauseServer) OnTraffic(c Conn) Action {
	s.traffic.Add(1)
	n := c.InboundBuffered()
	if n > 0 {
		_, _ = c.Discard(n)
	}
	if s.got.Add(int64(n)) >= s.pauseAt && n > 0 {
		select {
		case <-s.paused:
		default:
			if err := c.PauseRead(); err != nil {
				panic(err)
			}
			if s.reply != nil {
				_, _ = c.Write(s.reply)
			}
			close(s.paused)
		}
	}
	return None
}

func (s *pauseServer) OnClose(Conn, error) Action { close(s.closed); return None }

// startPause runs s on a kernel-picked port and dials it.
func startPause(t *testing.T, s *pauseServer, et bool) (*net.TCPConn, Conn) {
	t.Helper()
	s.booted, s.conn = make(chan struct{}), make(chan Conn, 1)
	s.paused, s.closed = make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(s, "tcp://127.0.0.1:0", WithEdgeTriggeredIO(et))
	}()
	select {
	case <-s.booted:
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.eng.Stop(ctx)
		<-done
	})
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
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	tc := nc.(*net.TCPConn)
	_ = tc.SetWriteBuffer(32 << 10)
	select {
	case c := <-s.conn:
		return tc, c
	case <-time.After(5 * time.Second):
		t.Fatal("no OnOpen")
	}
	return nil, nil
}

// resume calls ResumeRead on c's loop.
func resume(t *testing.T, c Conn) {
	t.Helper()
	errc := make(chan error, 1)
	err := c.EventLoop().Execute(context.Background(), RunnableFunc(func(context.Context) error {
		errc <- c.ResumeRead()
		return nil
	}))
	if err == nil {
		err = <-errc
	}
	if err != nil {
		t.Fatal(err)
	}
}

// quietWhile runs f and fails if the process was busy for more than a
// quarter of that time: a poller that reports a paused socket's readable
// bytes over and over (level-triggered) keeps its loop spinning.
func quietWhile(t *testing.T, f func()) {
	t.Helper()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, t0 := cpu(), time.Now()
	f()
	if used, wall := cpu()-c0, time.Since(t0); used > wall/4 {
		t.Fatalf("busy while paused: %v of CPU in %v", used, wall)
	}
}

// waitStill waits until v stops changing for a while and returns it.
func waitStill(t *testing.T, v func() int64) int64 {
	t.Helper()
	last, since := v(), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if now := v(); now != last {
			last, since = now, time.Now()
		} else if time.Since(since) >= 300*time.Millisecond {
			return last
		}
	}
	t.Fatal("value never settled")
	return 0
}

var triggerModes = []struct {
	name string
	et   bool
}{{"level", false}, {"edge", true}}

// TestPauseReadBackPressure: once paused, nothing more is read; the sender's
// writes stall (its bytes wait in the kernel, the TCP window closes), and
// resuming delivers every byte.
func TestPauseReadBackPressure(t *testing.T) {
	for _, m := range triggerModes {
		t.Run(m.name, func(t *testing.T) {
			s := &pauseServer{pauseAt: 1}
			nc, c := startPause(t, s, m.et)
			const total = 16 << 20
			var sent atomic.Int64
			wrote := make(chan error, 1)
			go func() {
				chunk := make([]byte, 16<<10)
				for sent.Load() < total {
					n, err := nc.Write(chunk)
					sent.Add(int64(n))
					if err != nil {
						wrote <- err
						return
					}
				}
				wrote <- nil
			}()
			select {
			case <-s.paused:
			case <-time.After(5 * time.Second):
				t.Fatal("never paused")
			}
			var stalledAt int64
			quietWhile(t, func() { stalledAt = waitStill(t, sent.Load) })
			got, calls := s.got.Load(), s.traffic.Load()
			if stalledAt >= total {
				t.Fatalf("the sender wrote all %d bytes while reading was paused", total)
			}
			if calls != 1 {
				t.Fatalf("OnTraffic ran %d times; after the pause it must not run", calls)
			}
			t.Logf("paused after %d bytes read; the sender stalled at %d", got, stalledAt)
			resume(t, c)
			select {
			case err := <-wrote:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("the sender is still stalled at %d after ResumeRead", sent.Load())
			}
			for deadline := time.Now().Add(10 * time.Second); s.got.Load() < sent.Load(); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("got %d of %d bytes after ResumeRead", s.got.Load(), sent.Load())
				}
			}
		})
	}
}

// TestPauseReadPendingOutput: output written while paused is sent in full
// (the writable interest works without the readable one), and once it is
// sent, reading stays paused until ResumeRead.
func TestPauseReadPendingOutput(t *testing.T) {
	for _, m := range triggerModes {
		t.Run(m.name, func(t *testing.T) {
			reply := bytes.Repeat([]byte("0123456789abcdef"), 512<<10) // 8 MiB: more than the socket takes at once
			s := &pauseServer{pauseAt: 1, reply: reply}
			nc, c := startPause(t, s, m.et)
			if _, err := nc.Write([]byte{1}); err != nil {
				t.Fatal(err)
			}
			<-s.paused
			_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			back := make([]byte, len(reply))
			if _, err := io.ReadFull(nc, back); err != nil {
				t.Fatalf("reading the reply written while paused: %v", err)
			}
			if !bytes.Equal(back, reply) {
				t.Fatal("reply corrupted")
			}
			if _, err := nc.Write([]byte("after")); err != nil {
				t.Fatal(err)
			}
			quietWhile(t, func() { time.Sleep(300 * time.Millisecond) }) // a restored readable interest would spin
			if got := s.got.Load(); got != 1 {
				t.Fatalf("read %d bytes while paused (output sent); want 1", got)
			}
			resume(t, c)
			for deadline := time.Now().Add(10 * time.Second); s.got.Load() < 6; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("got %d of 6 bytes after ResumeRead", s.got.Load())
				}
			}
		})
	}
}

// TestPauseReadHalfClose: a peer that sends and shuts down its side while
// reading is paused is not closed early: on ResumeRead its last bytes are
// read, then the end of the stream closes it.
func TestPauseReadHalfClose(t *testing.T) {
	for _, m := range triggerModes {
		t.Run(m.name, func(t *testing.T) {
			s := &pauseServer{pauseAt: 1}
			nc, c := startPause(t, s, m.et)
			if _, err := nc.Write([]byte{1}); err != nil {
				t.Fatal(err)
			}
			<-s.paused
			if _, err := nc.Write([]byte("last words")); err != nil {
				t.Fatal(err)
			}
			if err := nc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-s.closed:
				t.Fatal("closed while paused: its last bytes were never read")
			case <-time.After(200 * time.Millisecond):
			}
			resume(t, c)
			select {
			case <-s.closed:
			case <-time.After(10 * time.Second):
				t.Fatal("not closed after ResumeRead read the end of the stream")
			}
			if got := s.got.Load(); got != 11 {
				t.Fatalf("got %d bytes, want 11", got)
			}
		})
	}
}

// TestPauseReadUnsupported: datagram connections refuse it.
func TestPauseReadUnsupported(t *testing.T) {
	c := &conn{isDatagram: true}
	if err := c.PauseRead(); !errors.Is(err, errorx.ErrUnsupportedOp) {
		t.Fatalf("PauseRead on UDP: %v", err)
	}
}
