//go:build linux && !gc_opt

// Test of midge's patch: the fd table (PATCHES.md).

package gnet

import (
	"math/rand"
	"testing"

	"github.com/panjf2000/gnet/v2/pkg/netpoll"
)

// TestConnTable drives a loop's fd table and a map side by side with random
// adds (new fds and a conn replacing another on the same fd), removals and
// lookups, through several growths and back down to empty, with fds dense
// as the kernel hands them out and spread over two loops, and checks that
// they agree after every step, that the count follows, and that iterate
// visits every conn once even when its function closes (removes) them.
func TestConnTable(t *testing.T) {
	rng := rand.New(rand.NewSource(19))
	var cm connMatrix
	cm.init()
	model := map[int]*conn{}
	check := func(step int) {
		if int(cm.loadCount()) != len(model) || cm.n != len(model) {
			t.Fatalf("step %d: count %d (n %d), want %d", step, cm.loadCount(), cm.n, len(model))
		}
	}
	for step := 0; step < 100000; step++ {
		fd := 2*rng.Intn(6000) + 7 // this loop's half of the fds
		switch op := rng.Intn(10); {
		case op < 5 && step < 60000:
			c := &conn{pollAttachment: netpoll.PollAttachment{FD: fd}}
			cm.addConn(c, 0)
			model[fd] = c
		case op < 8:
			if c := model[fd]; c != nil {
				cm.delConn(c)
				delete(model, fd)
			}
		default:
			if got := cm.getConn(fd); got != model[fd] {
				t.Fatalf("step %d: getConn(%d) = %p, want %p", step, fd, got, model[fd])
			}
		}
		if step%1009 == 0 {
			check(step)
			for fd, c := range model {
				if cm.getConn(fd) != c {
					t.Fatalf("step %d: fd %d lost", step, fd)
				}
			}
		}
	}
	seen := map[*conn]bool{}
	cm.iterate(func(c *conn) bool {
		if seen[c] || model[c.pollAttachment.FD] != c {
			t.Fatalf("iterate visits fd %d's %p twice or not held", c.pollAttachment.FD, c)
		}
		seen[c] = true
		cm.delConn(c) // as closeConns does
		delete(model, c.pollAttachment.FD)
		return true
	})
	if len(model) != 0 {
		t.Fatalf("iterate missed %d conns", len(model))
	}
	check(-1)
	if cm.getConn(7) != nil {
		t.Fatal("getConn on an empty table found a conn")
	}
}

// BenchmarkGetConn is the lookup every I/O event makes, among 10,000 conns
// of one loop (every other fd, as with two loops), against upstream's map.
func BenchmarkGetConn(b *testing.B) {
	const n = 10000
	var cm connMatrix
	m := make(map[int]*conn)
	for i := 0; i < n; i++ {
		c := &conn{pollAttachment: netpoll.PollAttachment{FD: 2*i + 7}}
		cm.addConn(c, 0)
		m[c.pollAttachment.FD] = c
	}
	b.Run("table", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if cm.getConn(2*(i%n)+7) == nil {
				b.Fatal("missing")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if m[2*(i%n)+7] == nil {
				b.Fatal("missing")
			}
		}
	})
}
