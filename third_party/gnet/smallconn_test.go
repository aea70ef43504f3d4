//go:build linux

// Tests of midge's patch: a smaller conn (PATCHES.md).

package gnet

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
)

// TestConnSize: without its fd (the PollAttachment has it), its gnet fd, its
// protocol string, its converted remote address, its current read and its
// Peek copy (both kept by the loop), a conn is at most 144 bytes, the
// 144-byte size class (it was 248, in the 256-byte class).
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 144 {
		t.Fatalf("conn is %d bytes, want at most 144", n)
	}
}

// TestConnMatrixKeepsConns adds connections, removes some in an order that
// makes the matrix (gc_opt) move others, and checks that every fd still
// finds its own conn: the gnet fd is kept by the matrix only.
func TestConnMatrixKeepsConns(t *testing.T) {
	tests := []struct {
		name   string
		add    int
		remove []int // fds, in order
	}{
		{"none removed", 3, nil},
		{"last removed", 3, []int{102}},
		{"first removed", 4, []int{100}},
		{"middle then first", 5, []int{102, 100}},
		{"all removed", 3, []int{101, 100, 102}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cm connMatrix
			cm.init()
			conns := map[int]*conn{}
			for i := 0; i < tt.add; i++ {
				fd := 100 + i
				c := &conn{pollAttachment: netpoll.PollAttachment{FD: fd}}
				cm.addConn(c, 0)
				conns[fd] = c
			}
			for _, fd := range tt.remove {
				cm.delConn(conns[fd])
				delete(conns, fd)
				if cm.getConn(fd) != nil {
					t.Fatalf("fd %d still found after its removal", fd)
				}
			}
			for fd, c := range conns {
				if got := cm.getConn(fd); got != c {
					t.Fatalf("fd %d finds %p, want %p", fd, got, c)
				}
			}
			if n := cm.loadCount(); int(n) != len(conns) {
				t.Fatalf("count %d, want %d", n, len(conns))
			}
		})
	}
}

// TestNewStreamConnAllocs: a new stream conn is one allocation, the conn:
// the poll callback (a method value, 16 bytes) is made only for the reactor
// that calls it (poll_opt).
func TestNewStreamConnAllocs(t *testing.T) {
	el := &eventloop{engine: &engine{opts: &Options{WriteBufferCap: 64 << 10}}}
	sa := &unix.SockaddrInet4{Port: 1883, Addr: [4]byte{127, 0, 0, 1}}
	want := 1.0
	if pollCallbackMade {
		want = 2
	}
	var c *conn
	if n := testing.AllocsPerRun(100, func() { c = newStreamConn("tcp", 7, el, sa, nil) }); n != want {
		t.Fatalf("newStreamConn makes %v allocations, want %v", n, want)
	}
	if c.Fd() != 7 || c.pollAttachment.FD != 7 {
		t.Fatalf("fd %d, attachment fd %d, want 7", c.Fd(), c.pollAttachment.FD)
	}
	if (c.pollAttachment.Callback != nil) != pollCallbackMade {
		t.Fatalf("poll callback set: %v, want %v", c.pollAttachment.Callback != nil, pollCallbackMade)
	}
}

// TestPeekSpanningCopy: a Peek over bytes split between a conn's inbound
// ring and the bytes of its current read (kept by the loop, not the conn)
// returns a copy that the loop keeps until that conn's Discard puts it back;
// another conn's Peek displacing it first leaves it to the GC, and the first
// conn's Discard then leaves the second's copy alone; closing a conn forgets
// its read and its copy. What a read leaves unconsumed goes to the conn's
// ring, as the loop does after OnTraffic.
func TestPeekSpanningCopy(t *testing.T) {
	el := &eventloop{engine: &engine{opts: &Options{WriteBufferCap: 64 << 10}}}
	sa := &unix.SockaddrInet4{Port: 1883, Addr: [4]byte{127, 0, 0, 1}}
	reading := func(c *conn) { // as eventloop.read does around OnTraffic
		_, _ = c.inboundBuffer.Write([]byte("hello "))
		el.readConn, el.readBuf = c, []byte("world!")
	}
	readDone := func(c *conn) {
		if el.readConn == c {
			_, _ = c.inboundBuffer.Write(el.readBuf)
			el.readConn, el.readBuf = nil, nil
		}
	}
	a, b := newStreamConn("tcp", 7, el, sa, nil), newStreamConn("tcp", 8, el, sa, nil)
	reading(a)
	if n := a.InboundBuffered(); n != 12 {
		t.Fatalf("a has %d bytes buffered, want 12", n)
	}
	pa, err := a.Peek(9)
	if err != nil || string(pa) != "hello wor" || el.peekConn != a {
		t.Fatalf("a.Peek(9) = %q, %v; loop keeps the copy of %p, want a's", pa, err, el.peekConn)
	}
	readDone(a)
	if n := b.InboundBuffered(); n != 0 {
		t.Fatalf("b, not reading, has %d bytes buffered", n)
	}
	reading(b)
	pb, err := b.Peek(9)
	if err != nil || string(pb) != "hello wor" || el.peekConn != b {
		t.Fatalf("b.Peek(9) = %q, %v; loop keeps the copy of %p, want b's", pb, err, el.peekConn)
	}
	if n, err := a.Discard(9); n != 9 || err != nil {
		t.Fatalf("a.Discard(9) = %d, %v", n, err)
	}
	if el.peekConn != b || string(el.peekBuf) != "hello wor" {
		t.Fatal("a's Discard dropped b's copy")
	}
	if rest, _ := a.Peek(0); string(rest) != "ld!" {
		t.Fatalf("a after Discard(9): %q, want %q", rest, "ld!")
	}
	if n, err := b.Discard(9); n != 9 || err != nil || el.peekConn != nil || el.peekBuf != nil {
		t.Fatalf("b.Discard(9) = %d, %v; the loop still keeps %p's copy", n, err, el.peekConn)
	}
	if rest, _ := b.Next(-1); string(rest) != "ld!" {
		t.Fatalf("b after Discard(9): %q, want %q", rest, "ld!")
	}
	readDone(b)
	c := newStreamConn("tcp", 9, el, sa, nil)
	reading(c)
	if _, err := c.Peek(8); err != nil || el.peekConn != c {
		t.Fatalf("c.Peek(8): %v", err)
	}
	c.release()
	if el.peekConn != nil || el.peekBuf != nil || el.readConn != nil || el.readBuf != nil {
		t.Fatal("a closed conn's read or copy is still kept by the loop")
	}
}
