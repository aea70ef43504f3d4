package session

import (
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/trie"
)

// will is a client's Will Message, copied out of its CONNECT [MQTT-3.1.2-8].
type will struct {
	m     *Message
	delay uint32 // v5 Will Delay Interval, seconds
}

// newWill copies the will of cp, using scratch as a PUBLISH-shaped packet.
func newWill(cp *codec.Connect, scratch *codec.Packet) *will {
	scratch.Reset()
	scratch.Type, scratch.QoS, scratch.Retain = codec.PUBLISH, cp.WillQoS, cp.WillRetain
	scratch.Payload = cp.WillPayload
	scratch.Props = cp.WillProps
	w := &will{m: newMessage(cp.WillTopic, scratch, time.Now().UnixNano()), delay: cp.WillProps.WillDelay}
	scratch.Props = codec.Properties{}
	return w
}

// publishWill routes a will now and releases it.
func (b *Broker) publishWill(c *Client, w *will) {
	pb := b.newBatch()
	b.routeMessage(nil, w.m, time.Now().UnixNano(), new(trie.Result), pb)
	b.submit(pb)
	w.m.Release()
}

// fireDelayedWill publishes a delayed will unless the session was resumed
// (or taken over) since it was scheduled [MQTT-3.1.3-9].
func (b *Broker) fireDelayedWill(s *Session, gen uint32, w *will) {
	pb := b.newBatch()
	s.mu.Lock()
	// Cancelled by a reconnect, or by a new connection for the client id
	// that ended the session (clean start) [MQTT-3.1.2-8]; a session that
	// expired sends it.
	cancelled := (s.timerGen != gen && !s.ended) || s.replaced
	if !cancelled {
		b.forgetWillLocked(s, pb)
	}
	s.mu.Unlock()
	b.submit(pb)
	if cancelled {
		w.m.Release()
		return
	}
	b.publishWill(nil, w)
}
