package session

import (
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/trie"
)

// A session in its dedup window takes each forward id once, remembers the
// last recentMax to 2*recentMax ids, lets messages without an id through,
// and drops the window once it has passed.
func TestRepeatedForwardIDs(t *testing.T) {
	s := &Session{fl: &flows{recent: &recentIDs{until: 100, cur: map[uint64]struct{}{}, prev: map[uint64]struct{}{}}}}
	// take is what deliver does: a copy not seen yet is taken and noted.
	take := func(id uint64, now int64) (repeat bool) {
		m := &Message{fwdID: id}
		if s.fl.recent != nil && s.repeatedLocked(m, now) {
			return true
		}
		s.tookLocked(m)
		return false
	}
	if take(7, 1) || !take(7, 2) {
		t.Fatal("id 7: want new, then repeated")
	}
	if take(0, 3) || take(0, 4) {
		t.Fatal("a message without a forward id is never a repeat")
	}
	for id := uint64(1000); id < 1000+recentMax; id++ {
		if take(id, 5) {
			t.Fatalf("id %d taken as a repeat", id)
		}
	}
	if !take(7, 6) {
		t.Fatal("id 7 forgotten within recentMax ids")
	}
	for id := uint64(100000); id < 100000+recentMax; id++ {
		take(id, 7)
	}
	if take(7, 8) {
		t.Fatal("id 7 still remembered after 2*recentMax newer ids")
	}
	if take(100000, 101) || s.fl.recent != nil {
		t.Fatal("the window is not let go once passed")
	}
	// A seed larger than two generations keeps its last ids.
	s.openRecentLocked(200, make([]uint64, 10*recentMax))
	if n := len(s.fl.recent.cur); n > 2*recentMax {
		t.Fatalf("seed of %d ids kept %d", 10*recentMax, n)
	}
}

// A copy dropped for a full queue is not noted as taken: another copy of
// it (relayed) may still be queued once there is room, rather than be
// dropped as a repeat of a message the session never got.
func TestDedupFullQueueNotTaken(t *testing.T) {
	b := benchBroker()
	b.opts.MaxQueuedMessages = 1
	c := connectClient(t, b, "s", codec.Version5, "t", 1)
	_ = c
	if !b.RecordIDs("s", time.Minute) {
		t.Fatal("session not held")
	}
	local := func(s trie.Subscriber) bool { _, remote := s.(Remote); return !remote }
	var r trie.Result
	p := &codec.Packet{Type: codec.PUBLISH, QoS: 1, Topic: []byte("t"), Payload: []byte("x")}
	s := b.registry.m.get("s")
	s.mu.Lock()
	s.owner = nil // offline: a full queue drops QoS 1 (no publisher to hold)
	s.mu.Unlock()
	b.RouteForwardedHeld(p, 41, "", &r, local, nil) // fills the queue
	b.RouteForwardedHeld(p, 42, "", &r, local, nil) // dropped: full
	if got := b.Queued("s"); got != 1 {
		t.Fatalf("%d queued, want 1", got)
	}
	s.mu.Lock()
	s.pop().m.Release() // room again
	s.mu.Unlock()
	b.RouteForwardedTo(p, 42, "s", "", &r, local) // its relayed copy
	if got := b.Queued("s"); got != 1 {
		t.Fatalf("%d queued after the relayed copy, want 1: the dropped copy was noted as taken", got)
	}
}

// Forward ids given off the loops (wills, $SYS, the broker's own
// publishes) differ from one message to the next: two messages sharing an
// id would make a session in its dedup window drop the second as a repeat.
func TestSoloForwardIDsDistinct(t *testing.T) {
	seen := map[uint64]bool{}
	for range 1000 {
		id := nextForwardID(nil)
		if id == 0 || seen[id] {
			t.Fatalf("forward id %d given twice (or 0)", id)
		}
		seen[id] = true
	}
}

// A session that is a member of a shared subscription and also subscribes
// to the same topic takes a message once through each (MQTT 5 §4.8.2: the
// shared subscription's copy is its own), also in its dedup window: only
// another copy of its ordinary delivery (relayed by the node it left) is a
// repeat.
func TestDedupWindowKeepsSharedAndOrdinaryCopies(t *testing.T) {
	b := benchBroker()
	c := connectClient(t, b, "s", codec.Version5, "t", 1)
	var out Output
	sp := &codec.Packet{Type: codec.SUBSCRIBE, PacketID: 2,
		Subscriptions: []codec.Subscription{{Filter: []byte("$share/g/t"), QoS: 1}}}
	if err := c.Handle(sp, &out); err != nil {
		t.Fatal(err)
	}
	if !b.RecordIDs("s", time.Minute) {
		t.Fatal("session not held")
	}
	p := &codec.Packet{Type: codec.PUBLISH, QoS: 1, Topic: []byte("t"), Payload: []byte("x")}
	local := func(s trie.Subscriber) bool { _, remote := s.(Remote); return !remote }
	var r trie.Result
	// Another node's batch: the message for this node's ordinary
	// subscribers, then for its pick of the group (same forward id).
	b.RouteForwardedHeld(p, 42, "", &r, local, nil)
	b.RouteForwardedHeld(p, 42, "$share/g/t", &r, local, nil)
	if got := b.Queued("s"); got != 2 {
		t.Fatalf("%d copies queued, want 2 (ordinary and shared)", got)
	}
	// The node the session left passes the ordinary copy on too: a repeat.
	b.RouteForwardedTo(p, 42, "s", "", &r, local)
	if got := b.Queued("s"); got != 2 {
		t.Fatalf("%d copies queued after the relayed one, want 2", got)
	}
}

// A session's dedup window goes once it has passed, by the broker's timers
// (Tick), without a delivery: an idle session installed from another node
// does not keep its ids. A window RecordIDs made longer goes at its new
// end.
func TestDedupWindowFreedByTick(t *testing.T) {
	from, to := benchBroker(), benchBroker()
	c := connectClient(t, from, "s", codec.Version5, "t", 1)
	c.s.mu.Lock()
	c.s.expiry = 600 // persistent: handed over with its state
	c.s.mu.Unlock()
	local := func(s trie.Subscriber) bool { _, remote := s.(Remote); return !remote }
	var r trie.Result
	p := &codec.Packet{Type: codec.PUBLISH, QoS: 1, Topic: []byte("t"), Payload: []byte("x")}
	from.RecordIDs("s", time.Minute)
	from.RouteForwardedHeld(p, 42, "", &r, local, nil)
	state, found := from.HandOver("s", true)
	if !found || state == nil {
		t.Fatal("no state handed over")
	}
	to.SetDedupWindow(time.Second)
	if err := to.Install("s", state, nil, false); err != nil {
		t.Fatal(err)
	}
	window := func() *recentIDs {
		s := to.registry.m.get("s")
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fl == nil {
			return nil
		}
		return s.fl.recent
	}
	w := window()
	if w == nil {
		t.Fatal("no dedup window after the install")
	}
	if _, ok := w.cur[42]; !ok {
		t.Fatal("the window does not know the id handed over")
	}
	start := time.Now()
	to.Tick(start.Add(500 * time.Millisecond))
	if window() == nil {
		t.Fatal("the window went before its end")
	}
	to.RecordIDs("s", time.Minute) // longer now
	to.Tick(start.Add(2 * time.Second))
	if window() == nil {
		t.Fatal("a window made longer went at its first end")
	}
	to.Tick(start.Add(2 * time.Minute))
	if window() != nil {
		t.Fatal("the window of an idle session outlived its end")
	}
	to.timers.mu.Lock()
	left := len(to.timers.h)
	to.timers.mu.Unlock()
	if left != 1 { // the session's expiry
		t.Fatalf("%d timers left, want 1 (the session's expiry)", left)
	}
}
