package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// The payload of a stream message: stream id, sequence number and the
// publish time, then padding.
const headerLen = 4 + 8 + 8

func stamp(b []byte, id int, seq uint64, at time.Time) {
	binary.BigEndian.PutUint32(b[0:4], uint32(id))
	binary.BigEndian.PutUint64(b[4:12], seq)
	binary.BigEndian.PutUint64(b[12:20], uint64(at.UnixNano()))
}

func unstamp(b []byte) (id int, seq uint64, at int64, ok bool) {
	if len(b) < headerLen {
		return 0, 0, 0, false
	}
	return int(binary.BigEndian.Uint32(b[0:4])), binary.BigEndian.Uint64(b[4:12]), int64(binary.BigEndian.Uint64(b[12:20])), true
}

// publisher sends one stream from one persistent session (so that its
// unacknowledged QoS 1/2 messages are resent after a reconnect), dropping
// or closing its connection now and then.
type publisher struct {
	s    *soak
	st   *stream
	name string
	cl   *client.Client
	rng  *rand.Rand
}

func (s *soak) newPublisher(i int, st *stream) *publisher {
	name := fmt.Sprintf("pub-%d", i)
	o := client.Options{Addr: s.cfg.addr, ClientID: name, KeepAlive: 30, MaxInflight: 10}
	if i%2 == 1 {
		o.Version = codec.Version5
		o.Props.SessionExpiry = 3600
		o.Props.Set(codec.PropSessionExpiry)
	}
	return &publisher{s: s, st: st, name: name, cl: client.New(o), rng: rand.New(rand.NewPCG(uint64(i), s.cfg.seed))}
}

// run publishes at the stream's rate until the load phase ends, then waits
// until everything it sent is acknowledged.
func (p *publisher) run() {
	s := p.s
	buf := make([]byte, headerLen+p.rng.IntN(s.cfg.payload))
	m := &client.Message{Topic: []byte(p.st.topic), Payload: buf, QoS: p.st.qos}
	mean := time.Duration(float64(time.Second) / s.perPubRate)
	nextChurn := time.Now().Add(s.onlineTime(p.rng, 2))
	for !s.loadOver() {
		time.Sleep(time.Duration(float64(mean) * (0.5 + p.rng.Float64())))
		select {
		case <-p.cl.Done():
			s.unexpectedDrops.Add(1)
			s.connect(p.cl, p.name)
			p.st.conns.Add(1)
			continue
		default:
		}
		if time.Now().After(nextChurn) {
			p.churn()
			nextChurn = time.Now().Add(s.onlineTime(p.rng, 2))
			continue
		}
		seq := p.st.next.Add(1) - 1
		now := time.Now()
		stamp(buf, p.st.id, seq, now)
		p.st.sending(seq, now)
		s.chk.qos[p.st.qos].published.Add(1)
		if p.st.qos == 0 {
			if p.cl.Publish(context.Background(), m) == nil {
				p.st.ack(seq)
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st := p.st
		_ = p.cl.PublishAsync(ctx, m, func(err error) {
			if err == nil {
				st.ack(seq)
			}
		})
		cancel()
	}
	p.drain()
}

// churn ends the connection (with or without DISCONNECT) and comes back
// after a pause; the session and its unacknowledged messages remain.
func (p *publisher) churn() {
	if p.rng.IntN(2) == 0 {
		p.cl.Disconnect(codec.Success, nil)
	} else {
		p.cl.Close()
	}
	p.s.churns.Add(1)
	time.Sleep(time.Duration(500+p.rng.IntN(2500)) * time.Millisecond)
	p.s.connect(p.cl, p.name)
	p.st.conns.Add(1)
}

// drain reconnects if needed and waits (bounded) until no QoS 1/2 message
// is unacknowledged.
func (p *publisher) drain() {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && !p.s.closing.Load() {
		select {
		case <-p.cl.Done():
			p.s.connect(p.cl, p.name)
			continue
		default:
		}
		if p.cl.Inflight() == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.s.closing.Load() {
		return
	}
	p.s.chk.fail("publisher-stuck", "%s: %d messages still unacknowledged 60s after the load ended", p.name, p.cl.Inflight())
}
