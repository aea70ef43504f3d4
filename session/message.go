package session

import (
	"sync"
	"sync/atomic"

	"github.com/midge-mqtt/midge/codec"
)

// Message is an application message that outlives the packet it came in:
// copied once from the publisher's inbound buffer, then shared, read-only, by
// every subscriber queue, inflight window and the retained store, each holding
// a reference. The last Release returns it to the pool.
type Message struct {
	refs atomic.Int32

	Topic   []byte
	Payload []byte
	QoS     byte
	Retain  bool

	// Forwarded v5 properties [MQTT-3.3.2-*]: payload format, content type,
	// response topic, correlation data and user properties, in order. The
	// message expiry is kept as an absolute deadline and re-encoded as what
	// remains when forwarded [MQTT-3.3.2-6].
	Props     codec.Properties
	ExpiresAt int64 // unix nanoseconds; 0 = never

	buf []byte // backing store of Topic, Payload and the byte-slice props

	// from is who published a retained message, for check_retain_source
	// (nil: the broker, or no check).
	from *reader

	// fwdID names the message across a cluster once it is forwarded: the
	// same id in every node's copy (0: not forwarded).
	fwdID uint64
}

// ForwardID is the message's cluster-wide id, given when it is first
// forwarded to another node (0 before).
func (m *Message) ForwardID() uint64 { return m.fwdID }

var messagePool = sync.Pool{New: func() any { return new(Message) }}

// forwardedProps are the single-valued PUBLISH properties a server passes on.
const forwardedProps = 1<<codec.PropPayloadFormat | 1<<codec.PropContentType |
	1<<codec.PropResponseTopic | 1<<codec.PropCorrelationData

// newMessage copies topic, payload and forwardable properties of p (which
// alias an inbound buffer) into a pooled Message with one reference.
func newMessage(topic []byte, p *codec.Packet, now int64) *Message {
	m := messagePool.Get().(*Message)
	m.refs.Store(1)
	size := len(topic) + len(p.Payload) + len(p.Props.ContentType) +
		len(p.Props.ResponseTopic) + len(p.Props.CorrelationData)
	for _, u := range p.Props.User {
		size += len(u.Key) + len(u.Value)
	}
	if cap(m.buf) < size {
		m.buf = make([]byte, 0, size)
	}
	b := m.buf[:0]
	b, m.Topic = appendField(b, topic)
	b, m.Payload = appendField(b, p.Payload)
	m.QoS, m.Retain, m.ExpiresAt, m.from, m.fwdID = p.QoS, p.Retain, 0, nil, 0

	m.Props.Reset()
	src := &p.Props
	m.Props.Present = src.Present & forwardedProps
	m.Props.PayloadFormat = src.PayloadFormat
	b, m.Props.ContentType = appendField(b, src.ContentType)
	b, m.Props.ResponseTopic = appendField(b, src.ResponseTopic)
	b, m.Props.CorrelationData = appendField(b, src.CorrelationData)
	for _, u := range src.User {
		var k, v []byte
		b, k = appendField(b, u.Key)
		b, v = appendField(b, u.Value)
		m.Props.User = append(m.Props.User, codec.UserProperty{Key: k, Value: v})
	}
	// The publisher's order, kept for the forwarded properties: the encoder
	// skips those the message does not carry (Order has room after the
	// first uses of a pooled Message).
	m.Props.Order = append(m.Props.Order, src.Order...)
	if src.Has(codec.PropMessageExpiry) {
		m.ExpiresAt = now + int64(src.MessageExpiry)*1e9
	}
	m.buf = b
	return m
}

// appendField copies s to the end of b (which has room) and returns the copy.
func appendField(b, s []byte) ([]byte, []byte) {
	if s == nil {
		return b, nil
	}
	start := len(b)
	b = append(b, s...)
	return b, b[start:len(b):len(b)]
}

func (m *Message) retain() { m.refs.Add(1) }

// Release drops one reference; the last one returns m to the pool.
func (m *Message) Release() {
	switch n := m.refs.Add(-1); {
	case n == 0:
		if cap(m.buf) > 64<<10 { // don't pool big buffers
			m.buf = nil
		}
		messagePool.Put(m)
	case n < 0:
		panic("session: message released twice")
	}
}

// expired reports whether the message's expiry interval has passed.
func (m *Message) expired(now int64) bool { return m.ExpiresAt != 0 && now >= m.ExpiresAt }

// remainingExpiry is the expiry interval to forward, in whole seconds, at least 1.
func (m *Message) remainingExpiry(now int64) uint32 {
	left := (m.ExpiresAt - now + 1e9 - 1) / 1e9
	if left < 1 {
		left = 1
	}
	return uint32(left)
}
