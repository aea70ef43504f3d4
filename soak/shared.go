package main

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// sharedGroup is one shared subscription, $share/NAME/soak/G/+/qQ, held by
// a few MQTT 5 persistent sessions that come and go (never taken over: the
// QoS 2 dedup state is the client's). Every message goes to one member.
type sharedGroup struct {
	s      *soak
	name   string
	filter string
	qos    byte

	mu      sync.Mutex
	streams map[int]*sharedTrack
}

type sharedTrack struct {
	st    *stream
	owner []int32 // member+1 that got each sequence number
	base  uint64
}

func (s *soak) newSharedGroup(j int, rng *rand.Rand) *sharedGroup {
	g := rng.IntN(s.groups)
	q := byte(1)
	if j%3 == 2 {
		q = 2
	}
	sg := &sharedGroup{s: s, name: fmt.Sprintf("sh%d", j), qos: q, streams: map[int]*sharedTrack{},
		filter: fmt.Sprintf("soak/%d/+/q%d", g, q)}
	for _, st := range s.streams {
		if matches(sg.filter, st.topic) {
			sg.streams[st.id] = &sharedTrack{st: st}
		}
	}
	return sg
}

// member runs one member of the group.
func (sg *sharedGroup) member(k int, rng *rand.Rand) {
	s := sg.s
	name := fmt.Sprintf("%s-m%d", sg.name, k)
	o := client.Options{Addr: s.cfg.addr, ClientID: name, KeepAlive: 30, Version: codec.Version5}
	o.Props.SessionExpiry = 3600
	o.Props.Set(codec.PropSessionExpiry)
	cl := client.New(o)
	var since atomic.Int64 // when the current connection started
	cl.OnMessage = func(m *client.Message) { sg.arrive(k, name, m, since.Load()) }
	err := s.connect(cl, name)
	if err == nil {
		since.Store(time.Now().UnixNano())
		err = s.subscribe(cl, name, codec.Subscription{Filter: []byte("$share/" + sg.name + "/" + sg.filter), QoS: sg.qos})
	}
	s.ready.Done()
	if err != nil {
		return
	}
	for !s.loadOver() {
		select {
		case <-cl.Done():
			s.unexpectedDrops.Add(1)
			s.connect(cl, name)
			since.Store(time.Now().UnixNano())
			continue
		case <-time.After(s.onlineTime(rng, 2)):
		case <-s.loadDone:
			continue
		}
		s.churns.Add(1)
		if rng.IntN(2) == 0 {
			cl.Disconnect(codec.Success, nil)
		} else {
			cl.Close()
		}
		time.Sleep(time.Duration(500+rng.IntN(3000)) * time.Millisecond)
		err := s.connect(cl, name)
		since.Store(time.Now().UnixNano())
		if err == nil && !cl.Connack().SessionPresent {
			s.chk.sessionsLost.Add(1)
			s.chk.fail("session-lost", "%s: persistent session not present on reconnect", name)
		}
	}
	select {
	case <-cl.Done():
		s.connect(cl, name)
	default:
	}
	s.keep(cl)
}

// arrive records which member got a message.
func (sg *sharedGroup) arrive(k int, name string, m *client.Message, since int64) {
	c := sg.s.chk
	id, seq, at, ok := unstamp(m.Payload)
	sg.mu.Lock()
	t := sg.streams[id]
	if !ok || t == nil {
		sg.mu.Unlock()
		c.fail("unexpected", "%s: a message on %q that no subscription asked for", name, m.Topic)
		return
	}
	for uint64(len(t.owner)) <= seq {
		t.owner = append(t.owner, make([]int32, len(t.owner)+64)...)
	}
	prev := t.owner[seq]
	if prev == 0 {
		t.owner[seq] = int32(k + 1)
	}
	sg.mu.Unlock()
	q := &c.qos[min(sg.qos, t.st.qos)]
	sg.s.lastArrival.Store(time.Now().UnixNano())
	switch {
	case prev == 0:
		q.delivered.Add(1)
		if at > since+int64(time.Second) { // not queued while away
			c.latency(sg.qos, time.Since(time.Unix(0, at)))
		}
	case int(prev) == k+1:
		q.duplicates.Add(1)
		if sg.qos == 2 {
			c.fail("qos2-duplicate", "%s: %s seq %d arrived twice at QoS 2 (shared)", name, t.st.topic, seq)
		}
	default:
		q.duplicates.Add(1)
		if sg.qos == 2 {
			c.fail("shared-twice", "$share/%s: %s seq %d went to members %d and %d at QoS 2", sg.name, t.st.topic, seq, prev-1, k)
		} else {
			c.sharedTwice.Add(1)
		}
	}
}

// judge, after the drain, counts acknowledged messages that no member got.
// Members subscribe before any publisher starts, so every message counts.
func (sg *sharedGroup) judge() {
	c := sg.s.chk
	sg.mu.Lock()
	defer sg.mu.Unlock()
	for _, t := range sg.streams {
		q := &c.qos[sg.qos]
		end := t.st.next.Load()
		for m := uint64(1); m < end; m++ {
			if !t.st.isAcked(m) {
				continue
			}
			q.required.Add(1)
			if m >= uint64(len(t.owner)) || t.owner[m] == 0 {
				q.lost.Add(1)
				c.fail(fmt.Sprintf("qos%d-loss", sg.qos), "$share/%s: %s seq %d acknowledged to its publisher, no member got it", sg.name, t.st.topic, m)
			}
		}
	}
}
