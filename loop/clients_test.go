package loop

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TestClientsSnapshot connects 6,000 raw-socket clients and takes the
// dashboard's snapshot of them: every one is there once, with its id,
// protocol and keepalive, and the loops are busy for little per client
// (logged: the figure behind "100,000 clients do not stall the broker").
func TestClientsSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of sockets")
	}
	const n = 6000
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
	fds := make([]int, 0, n)
	t.Cleanup(func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	})
	for i := range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatalf("socket: %v", err)
		}
		fds = append(fds, fd)
		if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		v := []byte{codec.Version311, codec.Version5}[i%2]
		f := v3ConnectPacket(v, fmt.Sprintf("c%05d", i), true, uint16(10+i%50)).Encode(nil, v)
		if _, err := syscall.Write(fd, f); err != nil {
			t.Fatalf("write CONNECT %d: %v", i, err)
		}
	}
	waitFor(t, func() bool { return broker.Stats.ClientsConnected.Load() == n })

	start := time.Now()
	cs, err := srv.Clients(context.Background())
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of %d clients: %v (%.0f ns a client; 100,000 would take %v over 2 loops)",
		len(cs), took, float64(took)/n, took*100000/n)
	if len(cs) != n {
		t.Fatalf("%d clients in the snapshot, want %d", len(cs), n)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	for i, c := range cs {
		want := fmt.Sprintf("c%05d", i)
		v := []byte{codec.Version311, codec.Version5}[i%2]
		if c.ID != want || c.Version != v || c.Keepalive != uint16(10+i%50) || c.ConnectedAt == 0 || c.Address == "" {
			t.Fatalf("client %d: %+v, want id %s protocol %d keepalive %d", i, c, want, v, 10+i%50)
		}
	}
	if got := srv.ListenerClients()[srv.Addrs()[0].String()]; got != n {
		t.Fatalf("listener connections %d, want %d", got, n)
	}
	if took > 5*time.Second {
		t.Fatalf("snapshot of %d clients took %v", n, took)
	}
}
