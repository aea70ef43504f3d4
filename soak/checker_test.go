package main

import (
	"strings"
	"testing"
	"time"
)

// TestChecker drives the checker with arrival sequences and checks what it
// calls a violation: it must catch each broken guarantee and nothing else.
func TestChecker(t *testing.T) {
	type step struct {
		seq   uint64
		acked []uint64 // acknowledged to the publisher before this arrival
	}
	cases := []struct {
		name       string
		pubQoS     byte
		qos        byte // effective
		base       uint64
		arrivals   []step
		ackAtEnd   []uint64
		want       string // violation kind, "" for none
		lost, dups int64
		newConnAt  uint64 // the publisher reconnected before sending this seq
	}{
		{name: "in order", pubQoS: 1, qos: 1, base: 1, arrivals: []step{{1, nil}, {2, nil}, {3, nil}}, ackAtEnd: []uint64{1, 2, 3}},
		// [MQTT-4.3.2] at least once: a repeat is allowed at QoS 1.
		{name: "qos1 duplicate allowed", pubQoS: 1, qos: 1, base: 1, arrivals: []step{{1, nil}, {2, nil}, {2, nil}}, dups: 1},
		// A QoS 1 publication resent by its publisher reaches a QoS 0 subscription twice.
		{name: "qos1 publication at qos0 twice", pubQoS: 1, qos: 0, base: 1, arrivals: []step{{1, nil}, {1, nil}}, dups: 1},
		// [MQTT-4.3.3] exactly once.
		{name: "qos2 duplicate", pubQoS: 2, qos: 2, base: 1, arrivals: []step{{1, nil}, {1, nil}}, want: "qos2-duplicate", dups: 1},
		{name: "qos2 publication at qos0 twice", pubQoS: 2, qos: 0, base: 1, arrivals: []step{{1, nil}, {1, nil}}, want: "qos0-duplicate", dups: 1},
		{name: "qos0 late on one connection", pubQoS: 0, qos: 0, base: 1, arrivals: []step{{1, nil}, {3, nil}, {2, nil}}, want: "order"},
		// QoS 0 sent on a publisher connection since closed: no order across connections.
		{name: "qos0 late across connections", pubQoS: 0, qos: 0, base: 1, newConnAt: 3, arrivals: []step{{1, nil}, {3, nil}, {2, nil}}},
		{name: "qos0 duplicate", pubQoS: 0, qos: 0, base: 1, arrivals: []step{{1, nil}, {1, nil}}, want: "qos0-duplicate", dups: 1},
		// [MQTT-4.6.0-5] order per topic.
		{name: "late first arrival", pubQoS: 1, qos: 1, base: 1, arrivals: []step{{1, nil}, {3, nil}, {2, nil}}, want: "order"},
		{name: "late first arrival qos2 at qos0", pubQoS: 2, qos: 0, base: 1, arrivals: []step{{1, nil}, {3, nil}, {2, nil}}, want: "order"},
		// A QoS 1 publication's first copy lost at QoS 0, its resend late.
		{name: "late resend at qos0", pubQoS: 1, qos: 0, base: 1, arrivals: []step{{1, nil}, {3, nil}, {2, nil}}},
		// A gap whose message the broker acknowledged is a loss.
		{name: "acked gap lost", pubQoS: 1, qos: 1, base: 1, arrivals: []step{{1, nil}, {3, []uint64{1, 2, 3}}}, want: "qos1-loss", lost: 1},
		{name: "qos2 acked gap lost", pubQoS: 2, qos: 2, base: 1, arrivals: []step{{1, nil}, {3, []uint64{2}}}, want: "qos2-loss", lost: 1},
		// A gap the broker never acknowledged: the publisher's connection dropped first.
		{name: "unacked gap", pubQoS: 1, qos: 1, base: 1, arrivals: []step{{1, nil}, {3, nil}}},
		// QoS 0 may be lost: counted, not a violation.
		{name: "qos0 gap", pubQoS: 0, qos: 0, base: 1, arrivals: []step{{1, nil}, {3, []uint64{2}}}, lost: 1},
		// Before the window (published before the SUBACK): neither required nor ordered.
		{name: "before window", pubQoS: 1, qos: 1, base: 5, arrivals: []step{{3, nil}, {6, nil}, {2, []uint64{2, 3, 4, 5}}}, want: "qos1-loss", lost: 1},
		// The tail: acknowledged above the highest seen, owed to a persistent session.
		{name: "tail lost", pubQoS: 1, qos: 1, base: 1, arrivals: []step{{1, nil}}, ackAtEnd: []uint64{1, 2}, want: "qos1-loss", lost: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker()
			st := &stream{topic: "soak/0/p0/q1", qos: tc.pubQoS}
			tr := &track{st: st, qos: tc.qos, persistent: true}
			tr.window(tc.base)
			for seq := uint64(1); seq < 10; seq++ {
				if seq == tc.newConnAt {
					st.conns.Add(1)
				}
				st.sending(seq, time.Now())
			}
			for _, a := range tc.arrivals {
				for _, m := range a.acked {
					st.ack(m)
				}
				c.arrive(tr, a.seq, "sub", 0, false)
				c.judgeGaps(tr, "sub", false, false)
			}
			for _, m := range tc.ackAtEnd {
				st.ack(m)
			}
			st.next.Store(1)
			for _, m := range tc.ackAtEnd {
				st.next.Store(max(st.next.Load(), m+1))
			}
			c.judgeGaps(tr, "sub", true, false)
			c.judgeTail(tr, "sub")
			var kinds []string
			for k := range c.byKind {
				kinds = append(kinds, k)
			}
			got := strings.Join(kinds, ",")
			if got != tc.want {
				t.Errorf("violations %q, want %q (%v)", got, tc.want, c.violations)
			}
			if l := c.qos[tc.qos].lost.Load(); l != tc.lost {
				t.Errorf("lost %d, want %d", l, tc.lost)
			}
			if d := c.qos[tc.qos].duplicates.Load(); d != tc.dups {
				t.Errorf("duplicates %d, want %d", d, tc.dups)
			}
		})
	}
}

// TestRetainVerify checks the retained rule [MQTT-3.3.1-6]: the newest
// value acknowledged before the SUBSCRIBE, or one published during it.
func TestRetainVerify(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := &retainSetter{}
	r.history[0] = []version{
		{v: 1, start: at(0), acked: at(10), hasAck: true},
		{v: 2, start: at(20), acked: at(30), hasAck: true},
		{v: 3, clear: true, start: at(40), acked: at(50), hasAck: true},
		{v: 4, start: at(60), acked: at(70), hasAck: true},
		{v: 5, start: at(80)}, // never acknowledged
	}
	cases := []struct {
		name       string
		sent, ack  int
		got        uint64
		ok, wantOK bool
	}{
		{"newest before", 35, 36, 2, true, true},
		{"stale", 35, 36, 1, true, false},
		{"cleared: none", 55, 56, 0, false, true},
		{"cleared: old value", 55, 56, 2, true, false},
		{"published during the subscribe", 55, 65, 4, true, true},
		{"none while a value stands", 75, 76, 0, false, false},
		{"unacknowledged newer, started before the SUBACK", 75, 85, 5, true, true},
		{"from the future", 75, 76, 5, true, false},
		{"never set", 0, 1, 0, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := r.verify(0, at(tc.sent), at(tc.ack), tc.got, tc.ok)
			if (err == nil) != tc.wantOK {
				t.Errorf("verify = %v, want ok %v", err, tc.wantOK)
			}
		})
	}
}

func TestLevels(t *testing.T) {
	cases := []struct {
		name string
		v    []float64
		ok   bool
	}{
		{"flat", []float64{10, 50, 50, 50, 51, 50, 50, 51, 50}, true},
		{"warm-up then flat", []float64{1, 20, 40, 50, 50, 50, 51, 50, 52}, true},
		{"climbs", []float64{10, 20, 30, 40, 50, 60, 70, 80, 90}, false},
		{"within slack", []float64{1, 1, 1, 1, 1, 1, 5, 5, 5}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, ok := levels(tc.v, 0.10, 8); ok != tc.ok {
				t.Errorf("levels(%v) = %v, want %v", tc.v, ok, tc.ok)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"soak/1/#", "soak/1/p4/q1", true},
		{"soak/1/+/q1", "soak/1/p4/q1", true},
		{"soak/1/+/q1", "soak/1/p4/q2", false},
		{"soak/+/p4/+", "soak/1/p4/q1", true},
		{"soak/+/p4/+", "soak/1/p44/q1", false},
		{"soak/+/+/q0", "soak/ret/s1/k2", false},
		{"soak/1/p4/q1", "soak/1/p4/q1", true},
	}
	for _, tc := range cases {
		if got := matches(tc.filter, tc.topic); got != tc.want {
			t.Errorf("matches(%q, %q) = %v", tc.filter, tc.topic, got)
		}
	}
}
