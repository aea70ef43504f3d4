package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// What MQTT promises, and so what the checker holds the broker to:
//
//   - Order: the messages of one publisher on one topic reach a subscriber in
//     the order they were published, at every QoS (MQTT 3.1.1 §4.6, "ordered
//     topic"; MQTT 5 [MQTT-4.6.0-5], [MQTT-4.6.0-6]). A message that arrives
//     for the first time after a later one of its stream is a violation.
//   - QoS 0 at most once: never twice; it may be lost (offline sessions,
//     a slow consumer's overflow, a dropped connection). Losses are counted.
//     A QoS 1 publication delivered at QoS 0 may come twice: the publisher
//     may resend it after a reconnect, and the broker forwards it again.
//   - QoS 1 at least once [MQTT-4.3.2]: a message the broker acknowledged
//     reaches every matching subscription that existed before it was
//     published, for a persistent session across its reconnects (the queue
//     limit is sized so that offline queues never overflow: see config).
//     Duplicates are allowed and counted.
//   - QoS 2 exactly once [MQTT-4.3.3]: as QoS 1, and never twice.
//   - Shared subscriptions [MQTT-4.8.2]: each message to one member only
//     (strict at QoS 2; at QoS 1 a second member is counted as a duplicate).
//   - Retained [MQTT-3.3.1-6]: a new subscription gets the newest retained
//     value (or none after a clear) that was acknowledged before it
//     subscribed, or one published while it subscribed.
//   - Wills [MQTT-3.1.2-8], [MQTT-3.1.2-10]: published when the connection
//     ends without DISCONNECT, never after a DISCONNECT.
//
// A message is "required" at a subscription when its publisher was handed
// it after the SUBACK (its sequence number is at or above the stream's next
// number read at the SUBACK), and it was acknowledged to the publisher
// (QoS 1/2; for QoS 0: written to the socket). A gap in a stream's arrivals
// is judged once the broker has acknowledged the missing message: it can
// never arrive in order after that.

// stream is what one publisher sends on its one topic.
type stream struct {
	id    int
	topic string
	qos   byte
	group int
	next  atomic.Uint64 // the next sequence number to hand out (from 1)

	mu    sync.Mutex
	acked bitmap   // acknowledged by the broker (QoS 0: written)
	sent  []int64  // unix nanos each sequence number was handed to the client
	conn  []uint32 // the publisher's connection (counted from 1) it was sent on
	conns atomic.Uint32
}

// sameConn reports whether a and b were sent on one publisher connection.
func (s *stream) sameConn(a, b uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return a < uint64(len(s.conn)) && b < uint64(len(s.conn)) && s.conn[a] == s.conn[b]
}

// sending records when seq was handed to the publisher's client.
func (s *stream) sending(seq uint64, at time.Time) {
	s.mu.Lock()
	for uint64(len(s.sent)) <= seq {
		s.sent = append(s.sent, make([]int64, len(s.sent)+64)...)
	}
	for uint64(len(s.conn)) <= seq {
		s.conn = append(s.conn, make([]uint32, len(s.conn)+64)...)
	}
	s.sent[seq] = at.UnixNano()
	s.conn[seq] = s.conns.Load()
	s.mu.Unlock()
}

func (s *stream) sentAt(seq uint64) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq >= uint64(len(s.sent)) {
		return time.Time{}
	}
	return time.Unix(0, s.sent[seq])
}

func (s *stream) isAcked(n uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked.has(n)
}

func (s *stream) ack(n uint64) {
	s.mu.Lock()
	s.acked.set(n)
	s.mu.Unlock()
}

// track is one subscription's view of one stream. Guarded by its
// subscriber's mutex.
type track struct {
	st         *stream
	qos        byte // effective: the lower of the publication's and the subscription's
	persistent bool // the window lasts for the session, across connections
	seen       bitmap
	base       uint64    // first required sequence number; 0 before the first SUBACK
	baseAt     time.Time // when the SUBACK came
	hi         uint64    // highest sequence number seen since base
	gaps       []uint64  // unseen numbers below hi, judged when acknowledged
	events     *eventLog
	recent     [64]arrival // the last arrivals by seq%64, to explain a duplicate
}

// arrival is how one message came: its packet id and DUP flag.
type arrival struct {
	seq uint64
	id  uint16
	dup bool
	at  time.Time
}

// window starts requiring messages from base (a SUBACK was received).
func (t *track) window(base uint64) {
	t.base, t.hi, t.baseAt = base, base-1, time.Now()
}

// qosStats are the totals for one effective QoS.
type qosStats struct {
	published  atomic.Int64 // by publishers of this QoS
	delivered  atomic.Int64 // first arrivals
	duplicates atomic.Int64
	lost       atomic.Int64
	reordered  atomic.Int64
	required   atomic.Int64 // required messages checked at the end
}

// violation is one broken guarantee.
type violation struct {
	At   time.Duration
	Kind string
	What string
}

// checker collects arrivals and judges them.
type checker struct {
	start time.Time
	qos   [3]qosStats

	sharedTwice     atomic.Int64 // QoS 1 messages delivered to two members
	lateResends     atomic.Int64 // QoS 1 publications at QoS 0 whose resent copy came late
	lateAcrossConns atomic.Int64 // QoS 0 sent on a publisher's closed connection, after later ones
	slowDropped     atomic.Int64 // QoS 0 lost at slow consumers
	unackedGaps     atomic.Int64 // gaps of messages the broker never acknowledged
	retainChecks    atomic.Int64
	willsOK         atomic.Int64
	willDups        atomic.Int64
	sessionsLost    atomic.Int64

	log io.Writer // violations are printed as they are found (the first 100)

	mu         sync.Mutex
	violations []violation
	byKind     map[string]int
	lat        [3][]time.Duration // this interval's latencies, by QoS
	latAll     [3][]time.Duration // sampled for the whole run
}

func newChecker() *checker {
	return &checker{start: time.Now(), byKind: map[string]int{}}
}

// fail records a broken guarantee.
func (c *checker) fail(kind, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byKind[kind]++
	c.record(kind, fmt.Sprintf(format, args...))
}

// record keeps a violation or note. Assumes c.mu is held.
func (c *checker) record(kind, what string) {
	v := violation{time.Since(c.start).Round(time.Millisecond), kind, what}
	if len(c.violations) < 500 {
		c.violations = append(c.violations, v)
	}
	if c.log != nil && len(c.violations) <= 100 {
		fmt.Fprintf(c.log, "soak: %v %s: %s\n", v.At, v.Kind, v.What)
	}
}

// note adds context to the list of violations without counting it.
func (c *checker) note(kind, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record(kind, fmt.Sprintf(format, args...))
}

func (c *checker) failures() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.byKind {
		n += v
	}
	return n
}

// latency records one live delivery's publish-to-arrival time.
func (c *checker) latency(qos byte, d time.Duration) {
	c.mu.Lock()
	c.lat[qos] = append(c.lat[qos], d)
	c.mu.Unlock()
}

// takeLatencies returns the interval's latencies (all QoS) and starts a new
// interval; every 8th is kept for the whole run's percentiles.
func (c *checker) takeLatencies() (all []time.Duration, byQoS [3][]time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q := range c.lat {
		byQoS[q] = c.lat[q]
		all = append(all, c.lat[q]...)
		for i := 0; i < len(c.lat[q]); i += 8 {
			c.latAll[q] = append(c.latAll[q], c.lat[q][i])
		}
		c.lat[q] = nil
	}
	return all, byQoS
}

// arrive judges the first or a repeated arrival of seq on t. who names the
// subscriber for the report. It returns whether this was a first arrival.
func (c *checker) arrive(t *track, seq uint64, who string, id uint16, dup bool) bool {
	q := &c.qos[t.qos]
	now := time.Now()
	prev := t.recent[seq%64]
	t.recent[seq%64] = arrival{seq, id, dup, now}
	if t.seen.has(seq) {
		q.duplicates.Add(1)
		// A QoS 1 hop may repeat a message: the publisher's (resent after
		// a reconnect, forwarded again) or the subscriber's. Neither hop
		// of a QoS 0 publication repeats, and a QoS 2 hop never does.
		pub := t.st.qos
		if pub == 0 || (pub == 2 && t.qos != 1) {
			c.fail(fmt.Sprintf("qos%d-duplicate", t.qos), "%s: %s seq %d arrived twice (delivered at QoS %d): now packet id %d dup %v%s",
				who, t.st.topic, seq, t.qos, id, dup, prev.describe(seq, now))
			if t.events != nil {
				c.note("duplicate-context", "%s around %s seq %d (second arrival at 0): %s", who, t.st.topic, seq, t.events.around(now))
			}
		}
		return false
	}
	t.seen.set(seq)
	q.delivered.Add(1)
	if t.base == 0 || seq < t.base {
		return true // published before the subscription: not required, not ordered
	}
	if seq > t.hi {
		for m := max(t.hi+1, t.base); m < seq; m++ {
			if !t.seen.has(m) {
				t.gaps = append(t.gaps, m)
			}
		}
		t.hi = seq
		return true
	}
	if i := slices.Index(t.gaps, seq); i >= 0 {
		t.gaps = slices.Delete(t.gaps, i, i+1)
	}
	q.reordered.Add(1)
	if t.st.qos == 0 && !t.st.sameConn(seq, t.hi) {
		// Sent on the publisher's previous connection, which it closed:
		// the broker may still have been reading it when the next one
		// began, and QoS 0 is never resent. No order across connections.
		c.lateAcrossConns.Add(1)
		return true
	}
	if t.st.qos == 1 && t.qos == 0 {
		// The first copy was lost at QoS 0 (an offline session, say) and
		// the publisher's resend after a reconnect, a new publication to
		// the broker, came after later messages: allowed.
		c.lateResends.Add(1)
		return true
	}
	c.fail("order", "%s: %s seq %d arrived after seq %d (QoS %d; packet id %d dup %v)", who, t.st.topic, seq, t.hi, t.qos, id, dup)
	if t.events != nil {
		c.note("order-context", "%s around %s seq %d (arrival at 0): %s", who, t.st.topic, seq, t.events.around(now))
	}
	return true
}

// judgeGaps settles t's gaps whose message the broker has acknowledged:
// they can no longer arrive in order, so they are lost. With final, gaps of
// messages never acknowledged are dropped (the publisher's connection ended
// before the broker took them). slow marks a slow consumer (QoS 0 only).
func (c *checker) judgeGaps(t *track, who string, final, slow bool) {
	keep := t.gaps[:0]
	for _, m := range t.gaps {
		switch {
		case t.st.isAcked(m):
			c.lose(t, m, who, slow)
		case final:
			c.unackedGaps.Add(1)
		default:
			keep = append(keep, m)
		}
	}
	t.gaps = keep
}

// lose counts one required message that did not arrive.
func (c *checker) lose(t *track, m uint64, who string, slow bool) {
	c.qos[t.qos].lost.Add(1)
	if t.qos == 0 {
		if slow {
			c.slowDropped.Add(1)
		}
		return
	}
	kind := "clean"
	if t.persistent {
		kind = "persistent"
	}
	c.fail(fmt.Sprintf("qos%d-loss", t.qos), "%s (%s): %s seq %d acknowledged to its publisher, never delivered (QoS %d; published %v after the SUBACK that required from seq %d; seen up to %d)",
		who, kind, t.st.topic, m, t.qos, t.st.sentAt(m).Sub(t.baseAt).Round(time.Microsecond), t.base, t.hi)
	if t.events != nil {
		c.note("loss-context", "%s around %s seq %d (published at 0): %s", who, t.st.topic, m, t.events.around(t.st.sentAt(m)))
	}
}

// judgeTail, at the end, after the drain, counts what a persistent session
// is still owed: acknowledged messages above the highest one it saw.
func (c *checker) judgeTail(t *track, who string) {
	if t.base == 0 {
		return
	}
	end := t.st.next.Load()
	for m := t.base; m < end; m++ {
		if !t.st.isAcked(m) {
			continue
		}
		c.qos[t.qos].required.Add(1)
		if m > t.hi && !t.seen.has(m) {
			c.lose(t, m, who, false)
		}
	}
}

// percentile of d (sorted in place), p in [0,1].
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(p * float64(len(d)-1))
	return d[i]
}

// eventLog keeps a client's recent connection events, to explain a loss.
type eventLog struct {
	mu sync.Mutex
	ev []event
}

type event struct {
	at   time.Time
	what string
}

func (l *eventLog) add(what string) {
	l.mu.Lock()
	l.ev = append(l.ev, event{time.Now(), what})
	if len(l.ev) > 200 {
		l.ev = append(l.ev[:0], l.ev[100:]...)
	}
	l.mu.Unlock()
}

// around lists the events within 20 s of t, relative to it.
func (l *eventLog) around(t time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.ev {
		if d := e.at.Sub(t); d > -20*time.Second && d < 20*time.Second {
			out = append(out, fmt.Sprintf("%s at %+v", e.what, d.Round(time.Millisecond)))
		}
	}
	return strings.Join(out, ", ")
}

func (a arrival) describe(seq uint64, now time.Time) string {
	if a.seq != seq {
		return ""
	}
	return fmt.Sprintf("; first packet id %d dup %v %v before", a.id, a.dup, now.Sub(a.at).Round(time.Millisecond))
}
