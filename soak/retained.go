package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// retainKeys is how many retained topics each setter owns.
const retainKeys = 16

// version is one retained publication of a key.
type version struct {
	v      uint64
	clear  bool
	start  time.Time
	acked  time.Time // zero: never acknowledged (the connection dropped)
	hasAck bool
}

// retainSetter sets and clears retained messages on its keys,
// soak/ret/sI/kK, at QoS 1, one at a time, and remembers each version.
type retainSetter struct {
	s    *soak
	i    int
	name string

	mu      sync.Mutex
	history [retainKeys][]version
}

func retainPayload(setter, key int, v uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:4], uint32(setter))
	binary.BigEndian.PutUint32(b[4:8], uint32(key))
	binary.BigEndian.PutUint64(b[8:16], v)
	return b
}

func (r *retainSetter) run(rng *rand.Rand) {
	s := r.s
	cl := client.New(client.Options{Addr: s.cfg.addr, ClientID: r.name, KeepAlive: 30})
	if s.connect(cl, r.name) != nil {
		return
	}
	s.keep(cl)
	var ver uint64
	for !s.loadOver() {
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		select {
		case <-cl.Done():
			s.unexpectedDrops.Add(1)
			s.connect(cl, r.name)
			continue
		default:
		}
		k := rng.IntN(retainKeys)
		ver++
		v := version{v: ver, clear: rng.IntN(7) == 0, start: time.Now()}
		m := &client.Message{Topic: []byte(fmt.Sprintf("soak/ret/s%d/k%d", r.i, k)), QoS: 1, Retain: true}
		if !v.clear {
			m.Payload = retainPayload(r.i, k, ver)
		}
		r.mu.Lock()
		r.history[k] = append(r.history[k], v)
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.Publish(ctx, m)
		cancel()
		if err == nil {
			r.mu.Lock()
			h := r.history[k]
			h[len(h)-1].acked, h[len(h)-1].hasAck = time.Now(), true
			r.mu.Unlock()
		}
	}
}

// verify judges what a subscription made between sent and acked received
// for key k: got is the version in a retained message (ok=false: none).
// Allowed: the newest version acknowledged before sent, or one started
// before the SUBACK and newer than that; none when that is a clear.
func (r *retainSetter) verify(k int, sent, acked time.Time, got uint64, ok bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.history[k]
	base := -1
	for i, v := range h {
		if v.hasAck && v.acked.Before(sent) {
			base = i
		}
	}
	okNone := base < 0 || h[base].clear
	allowed := map[uint64]bool{}
	if base >= 0 && !h[base].clear {
		allowed[h[base].v] = true
	}
	for i := base + 1; i < len(h); i++ {
		if h[i].start.Before(acked) {
			if h[i].clear {
				okNone = true
			} else {
				allowed[h[i].v] = true
			}
		}
	}
	switch {
	case !ok && !okNone:
		return fmt.Errorf("no retained message, want version %d", h[base].v)
	case ok && !allowed[got]:
		want := "none"
		if base >= 0 && !h[base].clear {
			want = fmt.Sprint(h[base].v)
		}
		return fmt.Errorf("retained version %d, want %s (or one published during the SUBSCRIBE)", got, want)
	}
	return nil
}

// retainChecker subscribes with a fresh clean session to one setter's
// keys every few seconds and judges the retained messages it gets.
func (s *soak) retainChecker(i int, rng *rand.Rand) {
	name := fmt.Sprintf("rchk-%d", i)
	for !s.loadOver() {
		time.Sleep(time.Duration(1000+rng.IntN(3000)) * time.Millisecond)
		r := s.setters[rng.IntN(len(s.setters))]
		var mu sync.Mutex
		got := map[int]uint64{}
		cl := client.New(client.Options{Addr: s.cfg.addr, ClientID: name, CleanStart: true, KeepAlive: 30})
		cl.OnMessage = func(m *client.Message) {
			if !m.Retain {
				return // a live publication [MQTT-3.3.1-9]
			}
			if len(m.Payload) != 16 || int(binary.BigEndian.Uint32(m.Payload)) != r.i {
				s.chk.fail("retained", "%s: retained message on %s with payload % x", name, m.Topic, m.Payload)
				return
			}
			k := int(binary.BigEndian.Uint32(m.Payload[4:8]))
			mu.Lock()
			if _, dup := got[k]; dup {
				s.chk.fail("retained", "%s: two retained messages for soak/ret/s%d/k%d", name, r.i, k)
			}
			got[k] = binary.BigEndian.Uint64(m.Payload[8:16])
			mu.Unlock()
		}
		if s.connect(cl, name) != nil {
			continue
		}
		sent := time.Now()
		err := s.subscribe(cl, name, codec.Subscription{Filter: []byte(fmt.Sprintf("soak/ret/s%d/+", r.i)), QoS: 1})
		acked := time.Now()
		if err != nil {
			cl.Close()
			continue
		}
		time.Sleep(2 * time.Second) // retained messages follow the SUBACK
		if cl.Disconnect(codec.Success, nil) != nil {
			continue // the connection dropped: what it got may be partial
		}
		mu.Lock()
		for k := range retainKeys {
			v, ok := got[k]
			if err := r.verify(k, sent, acked, v, ok); err != nil {
				s.chk.fail("retained", "%s: soak/ret/s%d/k%d: %v", name, r.i, k, err)
			}
		}
		mu.Unlock()
		s.chk.retainChecks.Add(1)
	}
}
