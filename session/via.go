package session

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/midge-mqtt/midge/codec"
)

// ViaKey is the v5 user property a midge bridge with bridge_loop_guard
// adds to each message it forwards, with its broker's ID as the value. A broker that receives a
// message carrying its own ID drops it: the message went round a loop of
// bridges and came back (mosquitto #3011, #204). The property is kept as
// the message travels on, so loops of any length are cut.
const ViaKey = "midge-via"

// newBrokerID is a random identity for one run of a broker.
func newBrokerID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ID is the broker's identity in ViaKey properties.
func (b *Broker) ID() string { return b.id }

// cameBack reports whether p's ViaKey properties hold this broker's ID.
func (b *Broker) cameBack(p *codec.Packet) bool {
	for i := range p.Props.User {
		u := &p.Props.User[i]
		if string(u.Key) == ViaKey && string(u.Value) == b.id {
			return true
		}
	}
	return false
}

// Queued is the number of messages waiting in the queue of client id's
// session (0 when there is none): a bridge's backlog for its remote.
func (b *Broker) Queued(id string) int {
	b.registry.mu.Lock()
	s := b.registry.m.get(id)
	b.registry.mu.Unlock()
	if s == nil {
		return 0
	}
	return int(s.queued.Load())
}

// Connecting marks the offline session of client id (a bridge's local
// side) as about to come online: from when the bridge's connection to its
// remote is made until its local client connects (or the attempt fails),
// QoS 0 messages for it are queued rather than dropped, as mosquitto does
// for a bridge whose socket is up. Any goroutine.
func (b *Broker) Connecting(id string, on bool) {
	b.registry.mu.Lock()
	s := b.registry.m.get(id)
	b.registry.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	s.connecting = on
	s.mu.Unlock()
}
