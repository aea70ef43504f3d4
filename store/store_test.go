package store

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// contents is everything Load returns, in order.
type contents struct {
	Retained []*Message
	Sessions []*Session
	Queued   []*Queued
	Awaiting []string // "client/id"
}

func load(t *testing.T, db *DB) (contents, Report) {
	t.Helper()
	var c contents
	rep, err := db.Load(Visitor{
		Retained:    func(m *Message) { c.Retained = append(c.Retained, m) },
		Session:     func(s *Session) { c.Sessions = append(c.Sessions, s) },
		Queued:      func(q *Queued) { c.Queued = append(c.Queued, q) },
		AwaitingRel: func(id string, p uint16) { c.Awaiting = append(c.Awaiting, fmt.Sprintf("%s/%d", id, p)) },
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c, rep
}

func open(t *testing.T, dir string, opts Options) *DB {
	t.Helper()
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return db
}

// commit submits b and waits until it is durable.
func commit(t *testing.T, db *DB, b *Batch) {
	t.Helper()
	seq := db.Submit(b)
	deadline := time.Now().Add(10 * time.Second)
	for db.Durable() < seq {
		if time.Now().After(deadline) {
			t.Fatalf("seq %d not durable (durable %d, err %v)", seq, db.Durable(), db.Err())
		}
		time.Sleep(time.Millisecond)
	}
	b.Reset()
}

func fullProps() codec.Properties {
	var p codec.Properties
	p.PayloadFormat = 1
	p.Set(codec.PropPayloadFormat)
	p.MessageExpiry = 3600
	p.Set(codec.PropMessageExpiry)
	p.ContentType = []byte("text/plain")
	p.ResponseTopic = []byte("reply/here")
	p.CorrelationData = []byte{0, 1, 2, 0xff}
	p.SubscriptionIDs = []uint32{1, 268435455}
	p.User = []codec.UserProperty{{Key: []byte("k"), Value: []byte("v")}, {Key: []byte("k"), Value: nil}}
	return p
}

// sample has one record of each kind with every field set, plus minimal ones.
func sample() contents {
	return contents{
		Retained: []*Message{
			{Topic: []byte("a/b"), Payload: []byte("hello"), QoS: 1, Retain: true, Props: fullProps(), ExpiresAt: 1_700_000_000_000_000_000},
			{Topic: []byte("empty"), QoS: 0, Retain: true},
		},
		Sessions: []*Session{
			{ClientID: "", Version: 4, Expiry: math.MaxUint32},
			{ClientID: "c1", Version: 5, Expiry: 60, DisconnectedAt: 123456789, Subscriptions: []Subscription{
				{Filter: "a/+", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 7},
				{Filter: "$share/g/x/#", QoS: 1},
			}, Will: &Message{Topic: []byte("will"), Payload: []byte("bye"), QoS: 1, Retain: true, Props: fullProps()}, WillDelay: 30},
		},
		Queued: []*Queued{
			{ClientID: "c1", Seq: 1, Msg: Message{Topic: []byte("t"), Payload: make([]byte, 64), QoS: 2}, QoS: 1},
			{ClientID: "c1", Seq: 256, Msg: Message{Topic: []byte("t"), Payload: []byte("x"), QoS: 2, Props: fullProps()},
				QoS: 2, Retain: true, SubIDs: []uint32{7}, PacketID: 65535, PubrelSent: true},
			{ClientID: "c2", Seq: 3, Msg: Message{Topic: []byte("u")}, QoS: 1, PacketID: 1},
		},
		Awaiting: []string{"c1/1", "c1/65535", "c2/9"},
	}
}

func putAll(b *Batch, c contents) {
	for _, m := range c.Retained {
		b.PutRetained(m)
	}
	for _, s := range c.Sessions {
		b.PutSession(s)
	}
	for _, q := range c.Queued {
		b.PutQueued(q)
	}
	for _, a := range c.Awaiting {
		i := strings.LastIndexByte(a, '/')
		p, _ := strconv.Atoi(a[i+1:])
		b.PutAwaitingRel(a[:i], uint16(p))
	}
}

func diff(t *testing.T, what string, got, want contents) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		for i := range max(len(got.Queued), len(want.Queued)) {
			if i < len(got.Queued) && i < len(want.Queued) && !reflect.DeepEqual(got.Queued[i], want.Queued[i]) {
				t.Logf("queued %d: got %+v want %+v", i, got.Queued[i], want.Queued[i])
			}
		}
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// TestRoundTrip stores every kind of record with every field set and reads
// them back equal, in key order, before and after a reopen.
func TestRoundTrip(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncInterval} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			dir := t.TempDir()
			db := open(t, dir, Options{Sync: mode, Interval: 10 * time.Millisecond})
			want := sample()
			b := NewBatch()
			putAll(b, want)
			commit(t, db, b)
			got, rep := load(t, db)
			if len(rep.Unreadable) != 0 {
				t.Fatalf("report: %v", rep.Unreadable)
			}
			diff(t, "before reopen", got, want)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = open(t, dir, Options{Sync: mode})
			defer db.Close()
			got, _ = load(t, db)
			diff(t, "after reopen", got, want)
		})
	}
}

// TestDeletes: each delete removes exactly its record; DeleteSession takes
// the client's queued messages and awaiting ids with it, and only that
// client's (not those of a client whose id it prefixes).
func TestDeletes(t *testing.T) {
	db := open(t, t.TempDir(), Options{})
	defer db.Close()
	b := NewBatch()
	c := sample()
	putAll(b, c)
	b.PutSession(&Session{ClientID: "c", Version: 4})
	b.PutQueued(&Queued{ClientID: "c", Seq: 1, QoS: 1, Msg: Message{Topic: []byte("c")}})
	b.PutAwaitingRel("c", 5)
	commit(t, db, b)

	b.DeleteRetained([]byte("empty"))
	b.DeleteQueued("c2", 3)
	b.DeleteAwaitingRel("c2", 9)
	b.DeleteSession("c")
	commit(t, db, b)

	want := sample()
	want.Retained = want.Retained[:1]
	want.Queued = want.Queued[:2]
	want.Awaiting = want.Awaiting[:2]
	got, _ := load(t, db)
	diff(t, "after deletes", got, want)

	b.DeleteSession("c1")
	commit(t, db, b)
	want.Sessions = want.Sessions[:1]
	want.Queued, want.Awaiting = nil, nil
	got, _ = load(t, db)
	diff(t, "after DeleteSession(c1)", got, want)
}

// TestQueuedOrder: queued messages come back in Seq order per client, also
// past byte boundaries of the sequence number.
func TestQueuedOrder(t *testing.T) {
	db := open(t, t.TempDir(), Options{})
	defer db.Close()
	seqs := []uint64{1 << 40, 255, 256, 1, 65536, 2}
	b := NewBatch()
	for _, s := range seqs {
		b.PutQueued(&Queued{ClientID: "z", Seq: s, QoS: 1})
		b.PutQueued(&Queued{ClientID: "a", Seq: s, QoS: 1})
	}
	commit(t, db, b)
	got, _ := load(t, db)
	var order []string
	for _, q := range got.Queued {
		order = append(order, fmt.Sprintf("%s%d", q.ClientID, q.Seq))
	}
	want := []string{"a1", "a2", "a255", "a256", "a65536", "a1099511627776", "z1", "z2", "z255", "z256", "z65536", "z1099511627776"}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

// TestBatchReuse: a batch copies what it is given, and is reusable after
// Submit: changing the caller's buffers or the batch later changes nothing
// stored.
func TestBatchReuse(t *testing.T) {
	db := open(t, t.TempDir(), Options{})
	defer db.Close()
	topic, payload := []byte("t/1"), []byte("v1")
	b := NewBatch()
	b.PutRetained(&Message{Topic: topic, Payload: payload})
	copy(topic, "XXX")
	copy(payload, "ZZ")
	seq := db.Submit(b)
	b.Reset()
	if b.Len() != 0 {
		t.Fatalf("Len after Reset = %d", b.Len())
	}
	b.PutRetained(&Message{Topic: []byte("t/2"), Payload: []byte("v2")})
	commit(t, db, b)
	if db.Durable() < seq {
		t.Fatal("first batch not durable")
	}
	got, _ := load(t, db)
	if len(got.Retained) != 2 || string(got.Retained[0].Topic) != "t/1" || string(got.Retained[0].Payload) != "v1" {
		t.Fatalf("retained %+v", got.Retained)
	}
}

// TestRetainedSource: a retained record keeps its publisher (a record
// without one is read as before), and a damaged source is an error.
func TestRetainedSource(t *testing.T) {
	src := &Source{ClientID: "c", Username: "u", HasUsername: true, Listener: "1883"}
	m := &Message{Topic: []byte("t/x"), Payload: []byte("p"), QoS: 1, Retain: true, Source: src}
	got, err := decodeRetained(m.Topic, encodeRetained(nil, m))
	if err != nil || got.Source == nil || *got.Source != *src || string(got.Payload) != "p" {
		t.Fatalf("with a source: %+v %v", got, err)
	}
	m.Source = nil
	if got, err = decodeRetained(m.Topic, encodeRetained(nil, m)); err != nil || got.Source != nil {
		t.Fatalf("without: %+v %v", got, err)
	}
	m.Source = src
	v := encodeRetained(nil, m)
	if _, err := decodeRetained(m.Topic, v[:len(v)-2]); err == nil {
		t.Fatal("a truncated source was read")
	}
}
