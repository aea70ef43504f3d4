package session

import (
	"bytes"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
)

// wakeTransport signals each wake-up on a channel, so a test can wait for
// the store to report durability the way a loop would.
type wakeTransport struct{ woken chan struct{} }

func newWakeTransport() *wakeTransport { return &wakeTransport{woken: make(chan struct{}, 1)} }

func (t *wakeTransport) Wake() {
	select {
	case t.woken <- struct{}{}:
	default:
	}
}
func (t *wakeTransport) Close()             {}
func (t *wakeTransport) RemoteAddr() string { return "test" }

// durableRig is a broker on a real store, with clients driven by hand, that
// checks one rule at every packet a client is given to send: whatever the
// store was given before it (the state the packet announces) is durable by
// then. That is what makes a kill -9 at any moment safe.
type durableRig struct {
	t  *testing.T
	b  *Broker
	db *store.DB
}

func newDurableRig(t *testing.T) *durableRig {
	b := benchBroker()
	db, err := store.Open(t.TempDir(), store.Options{OnDurable: b.Durable})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := b.AttachStore(db); err != nil {
		t.Fatal(err)
	}
	return &durableRig{t: t, b: b, db: db}
}

// rigClient is one connection of the rig.
type rigClient struct {
	c  *Client
	tr *wakeTransport
	v  byte
}

// connect opens a v3.1.1 connection for id, persistent unless clean, and
// settles the store unless busy.
func (r *durableRig) connect(id string, clean, busy bool) *rigClient {
	tr := newWakeTransport()
	c := r.b.NewClient(tr, nil)
	var p codec.Packet
	p.Type = codec.CONNECT
	p.Connect.ProtocolName, p.Connect.ProtocolLevel = []byte("MQTT"), codec.Version311
	p.Connect.ClientID, p.Connect.CleanStart = []byte(id), clean
	rc := &rigClient{c: c, tr: tr, v: codec.Version311}
	var out Output
	if err := c.Handle(&p, &out); err != nil {
		r.t.Fatalf("connect: %v", err)
	}
	out.Done()
	if !busy {
		r.settle()
	}
	return rc
}

// settle waits until everything submitted is durable. The check in taken
// is strict (every batch submitted so far): a step calls settle after
// changes that the next packets do not announce (a session's record, an
// acknowledgement's delete), so that the check is about theirs alone.
func (r *durableRig) settle() {
	r.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); r.db.Durable() < r.db.Submitted(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatal("store not durable within 5s")
		}
	}
}

// send hands p to rc and returns the packets rc answers with at once,
// checking that their state is durable.
func (r *durableRig) send(rc *rigClient, p *codec.Packet) []codec.Packet {
	r.t.Helper()
	var out Output
	if err := rc.c.Handle(p, &out); err != nil {
		r.t.Fatalf("%s: %v", p.Type, err)
	}
	if _, err := rc.c.Drain(&out, 1<<20); err != nil {
		r.t.Fatal(err)
	}
	return r.taken(rc, &out)
}

// taken decodes what out holds, after checking that every batch submitted
// so far is durable if out holds anything of a QoS 1/2 flow.
func (r *durableRig) taken(rc *rigClient, out *Output) []codec.Packet {
	r.t.Helper()
	need, durable := r.db.Stats().Batches, r.db.Durable()
	var raw []byte
	for _, v := range out.Vectors() {
		raw = append(raw, v...)
	}
	out.Done()
	var got []codec.Packet
	dec := codec.Decoder{Version: rc.v}
	for len(raw) > 0 {
		var p codec.Packet
		n, err := dec.Decode(raw, &p)
		if err != nil {
			r.t.Fatalf("decode output: %v", err)
		}
		got = append(got, p)
		raw = raw[n:]
	}
	for _, p := range got {
		flow := p.Type == codec.PUBREC || p.Type == codec.PUBREL || p.Type == codec.PUBCOMP ||
			p.Type == codec.PUBACK || (p.Type == codec.PUBLISH && p.QoS > 0)
		if flow && durable < need {
			r.t.Fatalf("%s (id %d) given to the socket while the store had made %d of %d batches durable: a crash now breaks exactly once",
				p.Type, p.PacketID, durable, need)
		}
	}
	return got
}

// reply sends p to rc and waits for its answer of type want.
func (r *durableRig) reply(rc *rigClient, p *codec.Packet, want codec.PacketType) codec.Packet {
	r.t.Helper()
	for _, got := range r.send(rc, p) {
		if got.Type == want {
			return got
		}
	}
	return r.await(rc, want)
}

// await drains rc, waking as a loop would, until it sends a packet of type
// want, which it returns.
func (r *durableRig) await(rc *rigClient, want codec.PacketType) codec.Packet {
	r.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		var out Output
		if _, err := rc.c.Drain(&out, 1<<20); err != nil {
			r.t.Fatal(err)
		}
		for _, p := range r.taken(rc, &out) {
			if p.Type == want {
				return p
			}
		}
		select {
		case <-rc.tr.woken:
		case <-deadline:
			r.t.Fatalf("no %s within 5s", want)
		}
	}
}

func ack(t codec.PacketType, id uint16) *codec.Packet {
	p := &codec.Packet{Type: t, PacketID: id}
	if t == codec.PUBREL {
		p.Flags = 2
	}
	return p
}

func publish2(id uint16, dup bool, payload string) *codec.Packet {
	return &codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: id, Dup: dup, Topic: []byte("t"), Payload: []byte(payload)}
}

// TestQoS2DurableBeforeSent: with persistence, each packet of a QoS 2 flow
// leaves only once the state it announces is durable, so that a kill -9
// between any two packets neither duplicates nor loses the message:
//   - the subscriber's PUBLISH only once its packet id is stored: after a
//     restart it is resent with that id, which the subscriber recognises
//     [MQTT-4.3.3-10] (under another id it would be a new message);
//   - PUBREL only once "PUBREC received" is stored: after a restart the
//     broker resends PUBREL, never the PUBLISH [MQTT-4.3.3-6] [MQTT-4.4.0-1],
//     which the subscriber, having answered PUBCOMP, would take as new
//     [MQTT-4.3.3-12];
//   - PUBREC only once the message is stored (ownership accepted
//     [MQTT-4.3.3-8]), also when the PUBLISH is a resend on a new connection;
//   - PUBCOMP only once the id's release is stored: else, after a restart,
//     the publisher's next message with that id, new to it [MQTT-4.3.3-12],
//     would be taken for a resend and dropped [MQTT-4.3.3-10].
func TestQoS2DurableBeforeSent(t *testing.T) {
	r := newDurableRig(t)
	sub := r.connect("keeper", false, false)
	sp := &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
		Subscriptions: []codec.Subscription{{Filter: []byte("t"), QoS: 2}}}
	if got := r.send(sub, sp); len(got) != 1 || got[0].Type != codec.SUBACK {
		t.Fatalf("SUBSCRIBE answered with %v", got)
	}

	// Outgoing: PUBLISH → PUBREC → PUBREL → PUBCOMP.
	pub := r.connect("pub", false, false)
	r.send(pub, publish2(7, false, "one"))
	out := r.await(sub, codec.PUBLISH)
	if string(out.Payload) != "one" {
		t.Fatalf("subscriber got %q", out.Payload)
	}
	r.reply(sub, ack(codec.PUBREC, out.PacketID), codec.PUBREL)

	// A new connection of the subscriber before PUBCOMP: the PUBREL resent
	// [MQTT-4.4.0-1] obeys the same rule.
	sub = r.connect("keeper", false, false)
	if rel := r.await(sub, codec.PUBREL); rel.PacketID != out.PacketID {
		t.Fatalf("PUBREL %d resent, want %d", rel.PacketID, out.PacketID)
	}
	r.send(sub, ack(codec.PUBCOMP, out.PacketID))
	r.settle()

	// Incoming: the publisher's PUBREC, then PUBCOMP.
	r.await(pub, codec.PUBREC)
	r.reply(pub, ack(codec.PUBREL, 7), codec.PUBCOMP)

	// The publisher resends a PUBLISH on a new connection, before its
	// first PUBREC came: the PUBREC of the resend waits too.
	r.send(pub, publish2(8, false, "two"))
	pub = r.connect("pub", false, true)
	r.reply(pub, publish2(8, true, "two"), codec.PUBREC)
	r.reply(pub, ack(codec.PUBREL, 8), codec.PUBCOMP)

	got := r.await(sub, codec.PUBLISH)
	if string(got.Payload) != "two" || got.Dup {
		t.Fatalf("subscriber got %q dup=%v, want \"two\" once", got.Payload, got.Dup)
	}
	if bytes.Equal(got.Payload, out.Payload) {
		t.Fatal("first message delivered again")
	}
}
