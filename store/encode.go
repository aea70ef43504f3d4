package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/midge-mqtt/midge/codec"
)

// Values are a version byte followed by the record's fields: integers as
// uvarints, byte strings as a uvarint length and the bytes, lists as a count
// and their items. The fields that are in the key (topic of a retained
// message, client id, seq) are not repeated in the value. A reader checks
// every length against what is left, so a damaged value is an error, never a
// panic or a huge allocation.
const recordV1 = 1

var (
	errShort    = errors.New("store: value truncated")
	errTrailing = errors.New("store: trailing bytes in value")
	errCounter  = errors.New("store: malformed counter")
)

func appendUvarint(dst []byte, v uint64) []byte { return binary.AppendUvarint(dst, v) }

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// reader decodes a value; the first error sticks and later reads return zero.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail(errShort)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bool() bool {
	switch r.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail(errors.New("store: bad boolean"))
	return false
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uint32() uint32 {
	v := r.uvarint()
	if v > 1<<32-1 {
		r.fail(errors.New("store: value out of range"))
		return 0
	}
	return uint32(v)
}

func (r *reader) uint16() uint16 {
	v := r.uvarint()
	if v > 1<<16-1 {
		r.fail(errors.New("store: value out of range"))
		return 0
	}
	return uint16(v)
}

// bytes returns a copy (nil when empty) so that records outlive the database
// iterator they were read from.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail(errShort)
		return nil
	}
	if n == 0 {
		return nil
	}
	b := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return b
}

// count reads a list length; each item takes at least one byte, which bounds
// it by what is left.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail(errShort)
		return 0
	}
	return int(n)
}

func (r *reader) version() {
	if v := r.byte(); r.err == nil && v != recordV1 {
		r.fail(fmt.Errorf("store: unknown record version %d", v))
	}
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(errTrailing)
	}
	return r.err
}

func appendSubIDs(dst []byte, ids []uint32) []byte {
	dst = appendUvarint(dst, uint64(len(ids)))
	for _, id := range ids {
		dst = appendUvarint(dst, uint64(id))
	}
	return dst
}

func (r *reader) subIDs() []uint32 {
	n := r.count()
	if n == 0 {
		return nil
	}
	ids := make([]uint32, n)
	for i := range ids {
		ids[i] = r.uint32()
	}
	return ids
}

// appendProps stores the properties a message carries to its subscribers.
func appendProps(dst []byte, p *codec.Properties) []byte {
	dst = appendUvarint(dst, p.Present)
	dst = append(dst, p.PayloadFormat)
	dst = appendUvarint(dst, uint64(p.MessageExpiry))
	dst = appendBytes(dst, p.ContentType)
	dst = appendBytes(dst, p.ResponseTopic)
	dst = appendBytes(dst, p.CorrelationData)
	dst = appendSubIDs(dst, p.SubscriptionIDs)
	dst = appendUvarint(dst, uint64(len(p.User)))
	for _, u := range p.User {
		dst = appendBytes(dst, u.Key)
		dst = appendBytes(dst, u.Value)
	}
	return dst
}

func (r *reader) props(p *codec.Properties) {
	p.Present = r.uvarint()
	p.PayloadFormat = r.byte()
	p.MessageExpiry = r.uint32()
	p.ContentType = r.bytes()
	p.ResponseTopic = r.bytes()
	p.CorrelationData = r.bytes()
	p.SubscriptionIDs = r.subIDs()
	if n := r.count(); n > 0 {
		p.User = make([]codec.UserProperty, n)
		for i := range p.User {
			p.User[i].Key = r.bytes()
			p.User[i].Value = r.bytes()
		}
	}
}

// appendMessage encodes m; the topic is left out when the key holds it.
func appendMessage(dst []byte, m *Message, withTopic bool) []byte {
	if withTopic {
		dst = appendBytes(dst, m.Topic)
	}
	dst = appendBytes(dst, m.Payload)
	dst = append(dst, m.QoS)
	dst = appendBool(dst, m.Retain)
	dst = appendUvarint(dst, uint64(m.ExpiresAt))
	return appendProps(dst, &m.Props)
}

func (r *reader) message(m *Message, withTopic bool) {
	if withTopic {
		m.Topic = r.bytes()
	}
	m.Payload = r.bytes()
	m.QoS = r.byte()
	if m.QoS > 2 {
		r.fail(fmt.Errorf("store: bad QoS %d", m.QoS))
	}
	m.Retain = r.bool()
	m.ExpiresAt = int64(r.uvarint())
	r.props(&m.Props)
}

// retainedV2 is a retained record that also holds its publisher (Source).
const retainedV2 = 2

func encodeRetained(dst []byte, m *Message) []byte {
	src := m.Source
	if src == nil {
		return appendMessage(append(dst, recordV1), m, false)
	}
	dst = appendMessage(append(dst, retainedV2), m, false)
	dst = appendBytes(dst, []byte(src.ClientID))
	dst = appendBool(dst, src.HasUsername)
	dst = appendBytes(dst, []byte(src.Username))
	return appendBytes(dst, []byte(src.Listener))
}

func decodeRetained(topic, v []byte) (*Message, error) {
	r := reader{b: v}
	version := r.byte()
	if r.err == nil && version != recordV1 && version != retainedV2 {
		r.fail(fmt.Errorf("store: unknown record version %d", version))
	}
	m := &Message{Topic: append([]byte(nil), topic...)}
	r.message(m, false)
	if version == retainedV2 {
		src := &Source{ClientID: string(r.bytes())}
		src.HasUsername = r.bool()
		src.Username = string(r.bytes())
		src.Listener = string(r.bytes())
		m.Source = src
	}
	return m, r.end()
}

// sessionV2 is a session record that also holds its client's identity.
const sessionV2 = 2

// sessionV3 is a session record that also holds its last packet id.
const sessionV3 = 3

func encodeSession(dst []byte, s *Session) []byte {
	dst = append(dst, sessionV3, s.Version)
	dst = appendUvarint(dst, uint64(s.Expiry))
	dst = appendUvarint(dst, uint64(s.DisconnectedAt))
	dst = appendUvarint(dst, uint64(len(s.Subscriptions)))
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		dst = appendBytes(dst, []byte(sub.Filter))
		dst = append(dst, sub.QoS)
		dst = appendBool(dst, sub.NoLocal)
		dst = appendBool(dst, sub.RetainAsPublished)
		dst = append(dst, sub.RetainHandling)
		dst = appendUvarint(dst, uint64(sub.ID))
	}
	dst = appendBool(dst, s.Will != nil)
	if s.Will != nil {
		dst = appendMessage(dst, s.Will, true)
	}
	dst = appendUvarint(dst, uint64(s.WillDelay))
	dst = appendBool(dst, s.HasUsername)
	dst = appendBytes(dst, []byte(s.Username))
	return appendUvarint(dst, uint64(s.LastID))
}

func decodeSession(clientID string, v []byte) (*Session, error) {
	r := reader{b: v}
	version := r.byte()
	if r.err == nil && version != recordV1 && version != sessionV2 && version != sessionV3 {
		r.fail(fmt.Errorf("store: unknown record version %d", version))
	}
	s := &Session{ClientID: clientID, Version: r.byte()}
	s.Expiry = r.uint32()
	s.DisconnectedAt = int64(r.uvarint())
	if n := r.count(); n > 0 {
		s.Subscriptions = make([]Subscription, n)
		for i := range s.Subscriptions {
			sub := &s.Subscriptions[i]
			sub.Filter = string(r.bytes())
			sub.QoS = r.byte()
			sub.NoLocal = r.bool()
			sub.RetainAsPublished = r.bool()
			sub.RetainHandling = r.byte()
			sub.ID = r.uint32()
		}
	}
	if r.bool() {
		s.Will = &Message{}
		r.message(s.Will, true)
	}
	s.WillDelay = r.uint32()
	if version >= sessionV2 { // v1 records hold no identity
		s.HasUsername = r.bool()
		s.Username = string(r.bytes())
	}
	if version >= sessionV3 {
		s.LastID = r.uint16()
	}
	return s, r.end()
}

func encodeQueued(dst []byte, q *Queued) []byte {
	dst = append(dst, recordV1, q.QoS)
	dst = appendBool(dst, q.Retain)
	dst = appendBool(dst, q.PubrelSent)
	dst = appendUvarint(dst, uint64(q.PacketID))
	dst = appendSubIDs(dst, q.SubIDs)
	return appendMessage(dst, &q.Msg, true)
}

func decodeQueued(clientID string, seq uint64, v []byte) (*Queued, error) {
	r := reader{b: v}
	r.version()
	q := &Queued{ClientID: clientID, Seq: seq, QoS: r.byte()}
	if q.QoS > 2 {
		r.fail(fmt.Errorf("store: bad QoS %d", q.QoS))
	}
	q.Retain = r.bool()
	q.PubrelSent = r.bool()
	q.PacketID = r.uint16()
	q.SubIDs = r.subIDs()
	r.message(&q.Msg, true)
	return q, r.end()
}
