package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// peer is one persistent MQTT session (midge's client) kept connected
// while it is wanted: after the broker dies it reconnects as soon as the
// broker is back, resuming its session (unacknowledged PUBLISH and PUBREL
// are resent with their packet ids, received QoS 2 ids are remembered).
type peer struct {
	c         *client.Client
	want      atomic.Bool // should be connected
	connected atomic.Bool
	connects  atomic.Int64
}

func newPeer(addr, id string, v5 bool, onPacket func(sent bool, p *codec.Packet)) *peer {
	o := client.Options{Addr: addr, ClientID: id, Version: codec.Version311, KeepAlive: 30, OnPacket: onPacket}
	if v5 {
		o.Version = codec.Version5
		o.Props.SessionExpiry = 0xFFFFFFFF
		o.Props.Set(codec.PropSessionExpiry)
	}
	return &peer{c: client.New(o)}
}

// run keeps the connection up while wanted, until ctx ends.
func (p *peer) run(ctx context.Context) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		if !p.want.Load() {
			<-tick.C
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.c.Connect(cctx)
		cancel()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.connects.Add(1)
		p.connected.Store(true)
		done := p.c.Done()
	up:
		for {
			select {
			case <-done:
				break up
			case <-ctx.Done():
				_ = p.c.Disconnect(0, nil)
				break up
			case <-tick.C:
				if !p.want.Load() {
					_ = p.c.Disconnect(0, nil)
					break up
				}
			}
		}
		p.connected.Store(false)
	}
}

// await waits until the peer's connection state is up (or down), for at
// most d.
func (p *peer) await(up bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for p.connected.Load() != up {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}
