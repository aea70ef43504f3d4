package loop

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// idleConnBudget is the live heap one idle MQTT 3.1.1 connection may hold in
// the broker process: gnet's connection (~370 B: its conn, the peer's
// addresses, its fd map entry) plus midge's conn with the session.Client
// inside (192 B), the Session (208 B), the client's identity (48 B), the
// registry entry and the client id. Measured at 875 B (1,058 B before the
// slimming of issue 6); the margin absorbs small runtime differences, not a
// new per-connection field.
const idleConnBudget = 900

// TestIdleConnectionFootprint connects idle clients with raw sockets (which
// hold no Go heap on the test's side) and checks the broker's live heap per
// connection against idleConnBudget, the cost issue 6 is about. Not
// parallel, so that nothing else allocates meanwhile.
func TestIdleConnectionFootprint(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of sockets")
	}
	const warm, n = 200, 3000
	// Its own broker, logging nowhere: a test's log buffer would grow with
	// every connection.
	opts := session.DefaultOptions()
	opts.Logger = log.New(io.Discard, "", 0)
	broker := session.NewBroker(opts)
	srv := New(broker, Config{Listeners: []string{"127.0.0.1:0"}, Loops: 2, Logger: opts.Logger})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	port := srv.Addrs()[0].(*net.TCPAddr).Port
	fds := make([]int, 0, warm+n)
	t.Cleanup(func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	})
	connect := func(i int) int {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatalf("socket: %v", err)
		}
		fds = append(fds, fd)
		sa := &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
		if err := syscall.Connect(fd, sa); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		tv := syscall.NsecToTimeval(int64(5 * time.Second))
		_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
		return fd
	}
	frame := func(i int) []byte {
		return v3ConnectPacket(codec.Version311, fmt.Sprintf("idle-%05d", i), true, 60).Encode(nil, codec.Version311)
	}
	handshake := func(fd, i int, f []byte) {
		if _, err := syscall.Write(fd, f); err != nil {
			t.Fatalf("write CONNECT %d: %v", i, err)
		}
		var ack [4]byte
		if m, err := syscall.Read(fd, ack[:]); err != nil || m != 4 || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK %d: % x (%d bytes), %v", i, ack[:max(m, 0)], m, err)
		}
	}
	// Warm up: the loops' scratch buffers, the trie's and registry's first
	// allocations are not per connection.
	for i := range warm {
		handshake(connect(i), i, frame(i))
	}
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = frame(warm + i)
	}
	before := liveHeap()
	for i := range n {
		handshake(connect(warm+i), warm+i, frames[i])
	}
	waitFor(t, func() bool { return broker.Stats.ClientsConnected.Load() == int64(warm+n) })
	after := liveHeap()
	perConn := float64(after-before) / n
	t.Logf("live heap per idle connection: %.0f B (budget %d)", perConn, idleConnBudget)
	if perConn > idleConnBudget {
		t.Fatalf("an idle connection holds %.0f B of live heap, over the budget of %d B", perConn, idleConnBudget)
	}
	runtime.KeepAlive(frames)
}

// liveHeap is the live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
