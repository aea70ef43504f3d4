package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// How a will client's connection ended.
const (
	endOpen       = iota // still connected
	endDisconnect        // DISCONNECT sent: no will [MQTT-3.1.2-10]
	endDrop              // closed without DISCONNECT: will [MQTT-3.1.2-8]
	endUnclear           // DISCONNECT could not be written, or the link failed on its own
)

type incarnation struct {
	end    int
	ended  time.Time
	wills  int
	judged bool
}

// wills tracks every connection of every will client and the wills that
// the watcher received.
type wills struct {
	s  *soak
	mu sync.Mutex
	by map[[2]uint64]*incarnation // client, incarnation
}

func willPayload(i int, inc uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b[0:8], uint64(i))
	binary.BigEndian.PutUint64(b[8:16], inc)
	return b
}

// client i connects with a will (clean session, QoS 1), stays a while, and
// ends with DISCONNECT or without; then again.
func (w *wills) client(i int, rng *rand.Rand) {
	s := w.s
	name := fmt.Sprintf("will-%d", i)
	for inc := uint64(1); !s.loadOver(); inc++ {
		key := [2]uint64{uint64(i), inc}
		cl := client.New(client.Options{Addr: s.cfg.addr, ClientID: name, CleanStart: true, KeepAlive: 30,
			Will: &client.Message{Topic: []byte(fmt.Sprintf("soak/will/%d", i)), Payload: willPayload(i, inc), QoS: 1}})
		w.mu.Lock()
		w.by[key] = &incarnation{}
		w.mu.Unlock()
		if s.connect(cl, name) != nil {
			w.ended(key, endUnclear)
			continue
		}
		end := endDrop
		select {
		case <-cl.Done():
			end = endUnclear
		case <-time.After(time.Duration(2000+rng.IntN(13000)) * time.Millisecond):
		case <-s.loadDone:
		}
		if end == endDrop && (s.loadOver() || rng.IntN(2) == 0) {
			end = endDisconnect
			w.ended(key, endDisconnect) // before the packet leaves
			if cl.Disconnect(codec.Success, nil) != nil {
				end = endUnclear
			}
		} else if end == endDrop {
			w.ended(key, endDrop)
			cl.Close()
		}
		w.ended(key, end)
		time.Sleep(time.Duration(300+rng.IntN(2000)) * time.Millisecond)
	}
}

func (w *wills) ended(key [2]uint64, end int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	in := w.by[key]
	in.end, in.ended = end, time.Now()
}

// watcher receives every will on soak/will/+ in a persistent session that
// stays connected.
func (w *wills) watcher() {
	s := w.s
	cl := client.New(client.Options{Addr: s.cfg.addr, ClientID: "will-watcher", KeepAlive: 30})
	cl.OnMessage = func(m *client.Message) {
		if len(m.Payload) != 16 {
			s.chk.fail("will", "will-watcher: %d-byte payload on %s", len(m.Payload), m.Topic)
			return
		}
		key := [2]uint64{binary.BigEndian.Uint64(m.Payload[0:8]), binary.BigEndian.Uint64(m.Payload[8:16])}
		w.mu.Lock()
		defer w.mu.Unlock()
		in := w.by[key]
		if in == nil {
			s.chk.fail("will", "will-watcher: a will for will-%d connection %d, which never was", key[0], key[1])
			return
		}
		in.wills++
	}
	if s.connect(cl, "will-watcher") != nil {
		s.ready.Done()
		return
	}
	s.subscribe(cl, "will-watcher", codec.Subscription{Filter: []byte("soak/will/+"), QoS: 1})
	s.ready.Done()
	s.keep(cl)
	for {
		select {
		case <-cl.Done():
			if s.closing.Load() {
				return
			}
			s.unexpectedDrops.Add(1)
			s.connect(cl, "will-watcher")
		case <-s.closingCh:
			return
		}
	}
}

// judge settles every connection that ended more than grace ago.
func (w *wills) judge(grace time.Duration) {
	c := w.s.chk
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, in := range w.by {
		if in.judged || in.end == endOpen || time.Since(in.ended) < grace {
			continue
		}
		in.judged = true
		switch in.end {
		case endDisconnect:
			if in.wills > 0 {
				c.fail("will", "will-%d connection %d: will published after DISCONNECT", key[0], key[1])
			} else {
				c.willsOK.Add(1)
			}
		case endDrop:
			switch {
			case in.wills == 0:
				c.fail("will", "will-%d connection %d: dropped without DISCONNECT, no will in %v", key[0], key[1], grace)
			case in.wills > 1:
				c.willDups.Add(int64(in.wills - 1)) // QoS 1: allowed
				c.willsOK.Add(1)
			default:
				c.willsOK.Add(1)
			}
		}
	}
}
