package session

import (
	"testing"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
)

// orderTransport records, at each wake-up, how many batches the store had
// been given by then.
type orderTransport struct {
	db      *store.DB
	atWakes []uint64
}

func (t *orderTransport) Wake()              { t.atWakes = append(t.atWakes, t.db.Stats().Batches) }
func (t *orderTransport) Close()             {}
func (t *orderTransport) RemoteAddr() string { return "order" }

// TestStoredBeforeWake: a persistent subscriber is woken for a stored QoS 1
// message only once the publisher's batch with its record is submitted, so
// its PUBACK's delete can never reach the store before the put (which would
// leave the record behind, to be delivered again after a restart).
func TestStoredBeforeWake(t *testing.T) {
	b := benchBroker()
	db, err := store.Open(t.TempDir(), store.Options{OnDurable: b.Durable})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := b.AttachStore(db); err != nil {
		t.Fatal(err)
	}
	tr := &orderTransport{db: db}
	sub := b.NewClient(tr, nil)
	var out Output
	var p codec.Packet
	p.Type = codec.CONNECT
	p.Connect.ProtocolName, p.Connect.ProtocolLevel = []byte("MQTT"), codec.Version311
	p.Connect.ClientID = []byte("keeper") // clean session 0: persistent
	if err := sub.Handle(&p, &out); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	p.Type, p.PacketID = codec.SUBSCRIBE, 1
	p.Subscriptions = append(p.Subscriptions, codec.Subscription{Filter: []byte("t"), QoS: 1})
	if err := sub.Handle(&p, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Drain(&out, 1<<20); err != nil {
		t.Fatal(err)
	}
	out = Output{}

	pub := connectClient(t, b, "pub", codec.Version311, "", 0)
	before := db.Stats().Batches
	tr.atWakes = nil
	p.Reset()
	p.Type, p.QoS, p.PacketID, p.Topic, p.Payload = codec.PUBLISH, 1, 7, []byte("t"), []byte("m")
	if err := pub.Handle(&p, &out); err != nil {
		t.Fatal(err)
	}
	if len(tr.atWakes) != 1 {
		t.Fatalf("subscriber woken %d times, want once", len(tr.atWakes))
	}
	if tr.atWakes[0] <= before {
		t.Fatalf("subscriber woken with %d batches submitted, %d before the PUBLISH: its record was not in the store yet", tr.atWakes[0], before)
	}
}
