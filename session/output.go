package session

import (
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
	"github.com/midge-mqtt/midge/trie"
)

// inlinePayload is the payload size up to which a payload is copied into the
// header buffer rather than referenced: below it, one more iovec costs more
// than the copy.
const inlinePayload = 512

// Output collects the bytes one connection writes in one loop turn: encoded
// packets in a growing buffer, with large shared payloads referenced, not
// copied, so that the transport sends all of it with one writev. The loop owns
// one Output and reuses it for every connection it serves (loop-only), so an
// idle connection holds no output buffer at all.
type Output struct {
	buf    []byte
	marks  []mark     // where a referenced payload goes between buf segments
	held   []*Message // messages whose payloads are referenced until Done
	iov    [][]byte
	marked int          // bytes of referenced payloads
	pkt    codec.Packet // scratch for encoding
	match  trie.Result  // scratch for routing a PUBLISH
	batch  *store.Batch // scratch for the store's changes, when the broker persists

	// A cluster's forwards of this turn, by Remote slot (cluster.go).
	fwds    []fwdBuf
	pending []int32
	fwdNext uint64 // the next forwarded message's id (0: not drawn yet)

	// now is the time of the loop turn (unix ns), read once per turn rather
	// than once per message; the transport sets it with SetNow.
	now int64
}

type mark struct {
	at      int // offset into buf after which payload is written
	payload []byte
}

// SetNow sets the time of the current loop turn.
func (o *Output) SetNow(t time.Time) { o.now = t.UnixNano() }

// clock is the turn's time, or the time now when the transport sets none.
func (o *Output) clock() int64 {
	if o.now != 0 {
		return o.now
	}
	return time.Now().UnixNano()
}

// Len is the number of bytes queued so far.
func (o *Output) Len() int {
	return len(o.buf) + o.marked
}

// Empty reports whether nothing is queued.
func (o *Output) Empty() bool { return len(o.buf) == 0 && len(o.marks) == 0 }

// appendPacket encodes p for the given protocol level.
func (o *Output) appendPacket(p *codec.Packet, version byte) {
	o.buf = p.Encode(o.buf, version)
}

// appendPublish encodes p's header and either copies its payload or
// references it (holding a reference on m until Done).
func (o *Output) appendPublish(p *codec.Packet, version byte, m *Message) {
	o.buf = codec.AppendPublishHeader(o.buf, version, p)
	if len(p.Payload) <= inlinePayload || m == nil {
		o.buf = append(o.buf, p.Payload...)
		return
	}
	m.retain()
	o.held = append(o.held, m)
	o.marks = append(o.marks, mark{at: len(o.buf), payload: p.Payload})
	o.marked += len(p.Payload)
}

// Vectors returns the queued bytes as iovecs for one writev. The result is
// valid until Done.
func (o *Output) Vectors() [][]byte {
	o.iov = o.iov[:0]
	prev := 0
	for _, m := range o.marks {
		if m.at > prev {
			o.iov = append(o.iov, o.buf[prev:m.at])
		}
		o.iov = append(o.iov, m.payload)
		prev = m.at
	}
	if len(o.buf) > prev {
		o.iov = append(o.iov, o.buf[prev:])
	}
	return o.iov
}

// Done is called once the transport has taken the bytes (gnet's Writev copies
// what it cannot send at once): referenced messages are released and the
// buffers reset for the next connection.
func (o *Output) Done() {
	for i, m := range o.held {
		m.Release()
		o.held[i] = nil
	}
	o.held = o.held[:0]
	o.marks = o.marks[:0]
	o.marked = 0
	for i := range o.iov {
		o.iov[i] = nil
	}
	o.iov = o.iov[:0]
	if cap(o.buf) > 1<<20 { // don't keep a huge buffer after a burst
		o.buf = nil
	}
	o.buf = o.buf[:0]
}
