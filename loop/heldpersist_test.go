package loop

import (
	"context"
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/store"
)

// startPersistentBroker is startBroker with a store attached before any
// client is served.
func startPersistentBroker(t *testing.T, opts *session.Options) *testBroker {
	t.Helper()
	logs := &syncBuffer{}
	o := *opts
	o.Logger = log.New(logs, "", log.Lmicroseconds)
	b := session.NewBroker(o)
	db, err := store.Open(t.TempDir(), store.Options{Sync: store.SyncAlways, OnDurable: b.Durable})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AttachStore(db); err != nil {
		t.Fatal(err)
	}
	srv := New(b, Config{Listeners: []string{"127.0.0.1:0"}, Loops: 2, Logger: o.Logger})
	if err := srv.Start(); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", logs.String())
		}
	})
	return &testBroker{Broker: b, Server: srv, Addr: srv.Addrs()[0].String(), logs: logs}
}

// TestHeldPublisherPersistent: a QoS 1 publisher held back by a persistent
// subscriber's filling queue stays held while its acknowledgements become
// durable. (Each commit wakes the publisher to send its acks; that wake used
// to read it on, one message per commit, and the queue grew without bound.)
// The hold counts messages, and bytes when max_queued_bytes is set.
// Once the subscriber reads, every message arrives, in order [MQTT-4.6.0-6].
func TestHeldPublisherPersistent(t *testing.T) {
	const (
		window  = 16
		publish = 400 * time.Millisecond // well under the 1 s after which a subscriber counts as stuck
	)
	for _, tc := range []struct {
		name     string
		messages int // max_queued_messages
		bytes    int // max_queued_bytes
		payload  int
		held     int // messages queued when the publisher is held
	}{
		{"messages", 100, 0, 6, 50},
		{"bytes", 0, 50_000, 1000, 25}, // 25,000 bytes: half of max_queued_bytes
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := session.DefaultOptions()
			opts.MaxQueuedMessages, opts.MaxQueuedBytes = tc.messages, tc.bytes
			tb := startPersistentBroker(t, &opts)

			sub, _ := tb.v3Connect(t, codec.Version311, "held-sub", false)
			sub.subscribe(1, "held/t", 1)
			pub, _ := tb.v3Connect(t, codec.Version311, "held-pub", true)
			payload := func(i int) []byte {
				p := []byte(fmt.Sprintf("%06d", i))
				return append(p, make([]byte, tc.payload-len(p))...)
			}

			// The subscriber reads nothing while the publisher keeps a full window.
			sent, acked := 0, 0
			for end := time.Now().Add(publish); time.Now().Before(end); {
				for sent-acked < window {
					sent++
					pub.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("held/t"),
						Payload: payload(sent), QoS: 1, PacketID: uint16(sent)})
				}
				p, err := pub.next(20 * time.Millisecond)
				if err != nil {
					continue // held: no ack
				}
				if p.Type != codec.PUBACK {
					t.Fatalf("publisher got %v", p.Type)
				}
				acked++
			}
			// What the broker read: 20 in flight to the subscriber
			// (max_inflight_messages), the queue up to the hold, and what
			// was buffered when the hold began.
			t.Logf("%d sent, %d acknowledged while the subscriber read nothing", sent, acked)
			if bound := 20 + tc.held + window; acked > bound {
				t.Fatalf("%d acknowledged while the subscriber read nothing, want at most %d: the hold leaked", acked, bound)
			}
			// The dashboard's snapshot shows the hold: the publisher held
			// back, the subscriber's queue (TestDashboardStoreAndQueues
			// totals them).
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cs, err := tb.Server.Clients(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if c.HeldBack != (c.ID == "held-pub") || (c.ID == "held-sub" && c.Queued == 0) {
					t.Errorf("snapshot of %s: held back %v, queued %d", c.ID, c.HeldBack, c.Queued)
				}
			}

			// The subscriber catches up: every message, in order, and every ack.
			for i := 1; i <= sent; i++ {
				p := sub.expect(codec.PUBLISH)
				if got := string(p.Payload[:6]); got != fmt.Sprintf("%06d", i) {
					t.Fatalf("subscriber got message %s, want %06d", got, i)
				}
				sub.ack(p)
			}
			for acked < sent {
				pub.expect(codec.PUBACK)
				acked++
			}
			sub.expectQuiet()
		})
	}
}

// TestHeldPublisherKeepalive: a publisher held back for longer than its
// keepalive is not disconnected as silent: its PINGREQs wait unread behind
// the hold, but it did send them [MQTT-3.1.2-24].
func TestHeldPublisherKeepalive(t *testing.T) {
	const total = 200
	opts := session.DefaultOptions()
	opts.MaxQueuedMessages = 100 // held from 50 queued
	tb := startBroker(t, &opts)
	sub, _ := tb.v3Connect(t, codec.Version311, "ka-sub", true)
	sub.subscribe(1, "ka/t", 1)
	pub := tb.v3Dial(t, codec.Version311)
	pub.send(v3ConnectPacket(codec.Version311, "ka-pub", true, 1)) // keepalive 1 s: silent after 1.5 s
	pub.expect(codec.CONNACK)
	for i := 1; i <= total; i++ {
		pub.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("ka/t"),
			Payload: []byte(fmt.Sprintf("%06d", i)), QoS: 1, PacketID: uint16(i)})
	}

	// For 3 s the subscriber takes one message every 200 ms (it keeps
	// moving, so the publisher stays held) and the publisher pings.
	got := 0
	take := func() {
		p := sub.expect(codec.PUBLISH)
		got++
		if want := fmt.Sprintf("%06d", got); string(p.Payload) != want {
			t.Fatalf("subscriber got %s, want %s", p.Payload, want)
		}
		sub.ack(p)
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		take()
		if got%2 == 0 {
			pub.write([]byte{0xC0, 0}) // PINGREQ
		}
		time.Sleep(200 * time.Millisecond)
	}
	for got < total {
		take()
	}
	acks := 0
	for acks < total {
		p, err := pub.next(v3Wait)
		if err != nil {
			t.Fatalf("publisher after %d acks: %v (disconnected while held?)", acks, err)
		}
		if p.Type == codec.PUBACK {
			acks++
		}
	}
}

// TestReceiveMaximumQoS1Held: with persistence a QoS 1 PUBACK waits until
// the message's record is synced, and so counts against the broker's
// Receive Maximum: a v5 client that sends more QoS 1 messages than it
// allows, without waiting for their PUBACKs, gets DISCONNECT 0x93
// [MQTT-3.3.4-9]. Ten in one write cannot all be synced one by one between
// two packets of the same read.
func TestReceiveMaximumQoS1Held(t *testing.T) {
	opts := session.DefaultOptions()
	opts.MaxInflight = 1
	tb := startPersistentBroker(t, &opts)
	sub := tb.raw(t, codec.Version311)
	sub.connect(connectPacket(codec.Version311, "keeper", false)) // persistent: its messages are stored
	sub.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("held"), QoS: 1}}})
	sub.expect(codec.SUBACK)

	r := tb.raw(t, codec.Version5)
	ack := r.connect(connectPacket(codec.Version5, "hasty", true))
	if ack.Props.ReceiveMaximum != 1 {
		t.Fatalf("CONNACK receive maximum %d", ack.Props.ReceiveMaximum)
	}
	var burst []byte
	for id := uint16(1); id <= 10; id++ {
		burst = (&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: id, Topic: []byte("held")}).Encode(burst, codec.Version5)
	}
	r.write(burst)
	for {
		p, err := r.next(v5Wait)
		if err != nil {
			t.Fatalf("no DISCONNECT 0x93: %v", err)
		}
		if p.Type == codec.DISCONNECT {
			if p.ReasonCode != codec.ReceiveMaximumExceeded {
				t.Fatalf("DISCONNECT 0x%02x", p.ReasonCode)
			}
			return
		}
	}
}
