package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// subscriber holds a few subscriptions (a group wildcard, single streams by
// exact name or by '+'), in a persistent or a clean session, and comes and
// goes: DISCONNECT, a dropped connection, or a takeover by a new connection
// with the same client id.
type subscriber struct {
	s          *soak
	name       string
	opts       client.Options
	subs       []codec.Subscription
	persistent bool
	slow       bool // a slow consumer: QoS 0 only, stalls now and then
	takeover   bool // may be taken over (no QoS 2 deliveries, whose dedup state is the client's)
	rng        *rand.Rand

	mu          sync.Mutex
	tracks      map[int]*track // by stream id
	cl          *client.Client
	connectedAt atomic.Int64 // unix nanos of the current connection's CONNACK
	paused      atomic.Bool  // slow consumer: stop reading
	events      eventLog
}

// matches reports whether filter (no $share) matches topic.
func matches(filter, topic string) bool {
	f, t := splitLevels(filter), splitLevels(topic)
	for i, lv := range f {
		if lv == "#" {
			return true
		}
		if i >= len(t) || (lv != "+" && lv != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}

func splitLevels(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// newSubscriber picks distinct filters (one per group wildcard or single
// stream; a filter repeated in a SUBSCRIBE replaces the first [MQTT-3.8.4-3],
// so the soak never sends one twice) and makes the tracks. A stream matched
// by two of them is delivered once, at the higher QoS of the two
// [MQTT-3.3.4-2], and its track expects that.
func (s *soak) newSubscriber(name string, persistent, slow bool, v5 bool, rng *rand.Rand) *subscriber {
	sub := &subscriber{s: s, name: name, persistent: persistent, slow: slow, rng: rng,
		tracks: map[int]*track{}}
	sub.opts = client.Options{Addr: s.cfg.addr, ClientID: name, KeepAlive: 30, CleanStart: !persistent}
	if v5 {
		sub.opts.Version = codec.Version5
		if persistent {
			sub.opts.Props.SessionExpiry = 3600
			sub.opts.Props.Set(codec.PropSessionExpiry)
		}
	}
	if slow {
		// A small receive buffer, so that a stall fills the broker's queue
		// rather than megabytes of loopback socket buffers.
		sub.opts.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			return cmp.Or(err, serr)
		}
	}
	var filters []string
	if slow {
		filters = []string{"soak/+/+/q0"}
	} else {
		g := rng.IntN(s.groups)
		if rng.IntN(3) == 0 {
			filters = append(filters, fmt.Sprintf("soak/%d/#", g))
		} else {
			filters = append(filters, fmt.Sprintf("soak/%d/+/q%d", g, rng.IntN(3)))
		}
		for len(filters) < 3 {
			st := s.streams[rng.IntN(len(s.streams))]
			if st.group == g {
				continue
			}
			f := st.topic
			if rng.IntN(2) == 0 {
				f = fmt.Sprintf("soak/+/p%d/+", st.id)
			}
			if !slices.Contains(filters, f) {
				filters = append(filters, f)
			}
		}
	}
	granted := map[int]byte{} // stream id → the highest QoS of the filters matching it
	q2 := false
	for _, f := range filters {
		qos := byte(rng.IntN(3))
		if slow {
			qos = 0
		}
		sub.subs = append(sub.subs, codec.Subscription{Filter: []byte(f), QoS: qos})
		for _, st := range s.streams {
			if !matches(f, st.topic) {
				continue
			}
			if g, ok := granted[st.id]; !ok || qos > g {
				granted[st.id] = qos
			}
		}
	}
	for _, st := range s.streams {
		g, ok := granted[st.id]
		if !ok {
			continue
		}
		t := &track{st: st, qos: min(g, st.qos), persistent: persistent, events: &sub.events}
		sub.tracks[st.id] = t
		q2 = q2 || t.qos == 2
	}
	sub.takeover = persistent && !q2
	return sub
}

// onMessage judges one arrival. It runs on the client's reader goroutine.
func (sub *subscriber) onMessage(m *client.Message) {
	s := sub.s
	for sub.paused.Load() {
		time.Sleep(20 * time.Millisecond) // not reading: TCP fills, the broker queues
	}
	id, seq, at, ok := unstamp(m.Payload)
	sub.mu.Lock()
	t := sub.tracks[id]
	if !ok || t == nil || string(m.Topic) != t.st.topic {
		sub.mu.Unlock()
		s.chk.fail("unexpected", "%s: a message on %q that no subscription asked for (%d bytes)", sub.name, m.Topic, len(m.Payload))
		return
	}
	first := s.chk.arrive(t, seq, sub.name, m.PacketID, m.Dup)
	qos := t.qos
	sub.mu.Unlock()
	if m.QoS != qos { // [MQTT-3.8.4-8]: the lower of the publication's and the subscription's
		s.chk.fail("qos", "%s: %s seq %d delivered at QoS %d, granted %d", sub.name, m.Topic, seq, m.QoS, qos)
	}
	now := time.Now()
	s.lastArrival.Store(now.UnixNano())
	if sub.slow {
		time.Sleep(time.Millisecond)
		return
	}
	// Latency only for messages published while this connection was up for
	// a second already: not what was queued while it was away.
	if c := sub.connectedAt.Load(); first && at > c+int64(time.Second) {
		s.chk.latency(qos, now.Sub(time.Unix(0, at)))
	}
}

// connect opens a connection (a new client when taking over or clean) and,
// when the session is new, subscribes and starts the required windows.
func (sub *subscriber) connect(fresh bool) {
	s := sub.s
	if fresh || sub.cl == nil {
		old := sub.cl
		cl := client.New(sub.opts)
		waited := old == nil
		cl.OnMessage = func(m *client.Message) {
			if !waited {
				// A takeover: the old client may still be handing over
				// what it read before the broker closed it; those came
				// first, so they are judged first.
				waited = true
				select {
				case <-old.Done():
				case <-time.After(5 * time.Second):
				}
			}
			sub.onMessage(m)
		}
		sub.cl = cl
	}
	first := sub.connectedAt.Load() == 0
	if s.connect(sub.cl, sub.name) != nil {
		return
	}
	sub.events.add(fmt.Sprintf("CONNACK (fresh client %v)", fresh))
	sub.connectedAt.Store(time.Now().UnixNano())
	if sub.persistent && !first {
		if !sub.cl.Connack().SessionPresent {
			s.chk.sessionsLost.Add(1)
			s.chk.fail("session-lost", "%s: persistent session not present on reconnect", sub.name)
		}
		return
	}
	// A clean session's window closes here: what the last connection left
	// open is judged, and arrivals on the new subscriptions before the
	// window opens at the SUBACK are neither required nor ordered.
	sub.mu.Lock()
	for _, t := range sub.tracks {
		if !t.persistent {
			s.chk.judgeGaps(t, sub.name, false, sub.slow)
			t.base, t.hi = 0, 0
		}
	}
	sub.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	codes, err := sub.cl.Subscribe(ctx, nil, sub.subs...)
	cancel()
	if err != nil {
		s.chk.fail("subscribe", "%s: SUBSCRIBE: %v", sub.name, err)
		return
	}
	for i, c := range codes {
		if c >= 0x80 || c != sub.subs[i].QoS {
			s.chk.fail("subscribe", "%s: SUBACK %#x for %s at QoS %d", sub.name, c, sub.subs[i].Filter, sub.subs[i].QoS)
		}
	}
	sub.events.add("SUBACK")
	sub.mu.Lock()
	for _, t := range sub.tracks {
		if t.base == 0 {
			t.window(t.st.next.Load())
		}
	}
	sub.mu.Unlock()
}

// run comes and goes until the load ends, then stays connected. The
// first connection is made before (connect).
func (sub *subscriber) run() {
	s := sub.s
	for !s.loadOver() {
		online := s.onlineTime(sub.rng, 1)
		if sub.slow {
			online = time.Duration(20+sub.rng.IntN(20)) * time.Second
		}
		select {
		case <-sub.cl.Done():
			s.unexpectedDrops.Add(1)
			sub.events.add(fmt.Sprintf("connection lost (%v)", sub.cl.Err()))
			sub.connect(!sub.persistent)
			continue
		case <-time.After(online):
		case <-s.loadDone:
			continue
		}
		if sub.slow {
			sub.stall()
			continue
		}
		s.churns.Add(1)
		r := sub.rng.IntN(10)
		switch {
		case r < 2 && sub.takeover:
			s.takeovers.Add(1)
			sub.events.add("takeover")
			sub.connect(true) // the broker closes the old connection
			continue
		case r < 6:
			sub.events.add("DISCONNECT")
			sub.cl.Disconnect(codec.Success, nil)
			sub.events.add("DISCONNECT done")
		default:
			sub.events.add("close")
			sub.cl.Close()
		}
		pause := 200 + sub.rng.IntN(1800)
		if sub.persistent {
			pause = 1000 + sub.rng.IntN(9000)
		}
		time.Sleep(time.Duration(pause) * time.Millisecond)
		sub.connect(!sub.persistent)
	}
	sub.ensureConnected()
}

// stall stops reading for 10–25 s: past a second the broker counts the
// consumer as stuck and, once its queue is full, drops its QoS 0 overflow.
func (sub *subscriber) stall() {
	sub.paused.Store(true)
	time.Sleep(time.Duration(10+sub.rng.IntN(15)) * time.Second)
	sub.paused.Store(false)
}

func (sub *subscriber) ensureConnected() {
	select {
	case <-sub.cl.Done():
		sub.connect(!sub.persistent)
	default:
	}
}

// judge settles acknowledged gaps; final also drops the unacknowledged ones
// and, for a persistent session, counts what is still owed.
func (sub *subscriber) judge(final bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for _, t := range sub.tracks {
		sub.s.chk.judgeGaps(t, sub.name, final, sub.slow)
		if final && t.persistent {
			sub.s.chk.judgeTail(t, sub.name)
		}
	}
}
