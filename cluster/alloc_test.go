package cluster

import (
	"io"
	"log"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/midge-mqtt/midge/session"
)

// Forwarding costs no allocation per message: encoding a message into a
// node's batch and publishing the batch on NATS (in process, to a real
// nats-server) reuse their buffers, as the local publish path does.
func TestForwardNoAllocs(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer ns.Shutdown()
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	n := &Node{nc: nc, max: int(nc.MaxPayload()), log: log.New(io.Discard, "", 0), holdSub: "midge.t.hold.me"}
	p := &peer{n: n, name: "peer", subject: "midge.t.n.peer"}
	m := &session.Message{Topic: []byte("sensors/1/temp"), Payload: make([]byte, 64), QoS: 1}
	buf := make([]byte, 0, 4096)
	now := time.Now().UnixNano()
	// Encoding into a node's batch: nothing.
	if a := testing.AllocsPerRun(1000, func() { buf = p.Append(buf[:0], m, 7, now) }); a != 0 {
		t.Fatalf("%.1f allocations per message appended, want 0", a)
	}
	// Publishing a batch of 20 messages: the nats client allocates nothing;
	// the in-process nats-server (counted too: AllocsPerRun is process-wide)
	// makes two objects per NATS message it handles (one more since a
	// forward carries a reply subject, where holds are asked: holdback.go),
	// so per batch, not per MQTT message.
	allocs := testing.AllocsPerRun(1000, func() {
		buf = buf[:0]
		for k := range 20 {
			buf = p.Append(buf, m, uint32(k), now)
		}
		p.Send(buf, 0)
	})
	if allocs > 2 {
		t.Fatalf("%.1f allocations per forwarded batch of 20 messages, want at most 2 (the server's, per batch)", allocs)
	}
	// The receiving side's NATS client makes one nats.Msg per batch (not
	// per message): subscribed only now, so that it is not counted above.
	got := make(chan int, 1)
	sub, err := nc.Subscribe("midge.t.n.peer", func(m *nats.Msg) {
		select {
		case got <- len(m.Data):
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	p.Send(buf, 0)
	select {
	case size := <-got:
		if size != len(buf) {
			t.Fatalf("received %d bytes, sent %d", size, len(buf))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no batch received")
	}
}
