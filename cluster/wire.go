package cluster

import (
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// Wire format of the messages one node forwards to another, on the NATS
// subject of the receiving node. The MQTT topic travels inside the payload,
// never in the subject, so every topic arrives byte-identical.
//
//	batch: 'F' base(8) record...
//	record: uvarint token, uvarint id-base, [relayed: uvarint length,
//	        client id, uvarint length, shared subscription filter or
//	        nothing], then the message as an MQTT 5 PUBLISH frame
//	        (QoS, RETAIN as published, forwarded properties, expiry left)
//	chunk: 'D' id(8) total(4) offset(4) bytes: a piece of a batch's records
//	       too large for one NATS message, reassembled by (sender, id)
//	'B' record... and 'C' chunks: the layout before forward ids, records of
//	       uvarint token and frame only; still read (id 0) from a node of an
//	       older midge during a rolling upgrade, which drops 'F' and 'D' as
//	       of unknown kind rather than misreading them
//	cut: 'T' client id: the node's own marker for a takeover (relay.go)
//	confirm: 'K' number(8): the sender asks for a confirmation of what it
//	       forwarded so far (confirm.go)
//
// token 0: for the node's ordinary subscribers; relayToken: passed on by
// the node a session left, for that session only (its client id follows);
// else the shared subscription (the node's own token for it, from its
// route) whose pick fell on the node. id is the message's forward id
// (session.Message.ForwardID), the same in every node's copy: the node a
// session moved to sees by it a message that came both ways. base is the
// batch's first id, so the others take a byte or two.
const (
	kindBatch    = 'F'
	kindChunk    = 'D'
	kindBatchV1  = 'B' // before forward ids
	kindChunkV1  = 'C'
	kindCut      = 'T'
	batchHeader  = 1 + 8
	chunkHeader  = 1 + 8 + 4 + 4
	maxChunkBody = 256 << 20 // a whole batch: at most one MQTT packet's worth, plus headers
)

var errWire = errors.New("cluster: malformed forwarded batch")

// appendRecord encodes m onto dst (a batch: its kind byte first).
// Allocation-free: the packet is built in place on the stack.
func appendRecord(dst []byte, m *session.Message, token uint32, now int64) []byte {
	id := m.ForwardID()
	if len(dst) == 0 {
		dst = binary.BigEndian.AppendUint64(append(dst, kindBatch), id)
	}
	dst = binary.AppendUvarint(dst, uint64(token))
	dst = binary.AppendUvarint(dst, id-binary.BigEndian.Uint64(dst[1:batchHeader]))
	var p codec.Packet
	fillPacket(&p, m, now)
	return p.Encode(dst, codec.Version5)
}

// fillPacket sets p to m as a PUBLISH. Its packet id is a placeholder: the
// receiving node numbers what it sends to each of its clients.
func fillPacket(p *codec.Packet, m *session.Message, now int64) {
	p.Type, p.QoS, p.Retain = codec.PUBLISH, m.QoS, m.Retain
	if m.QoS > 0 {
		p.PacketID = 1
	}
	p.Topic, p.Payload, p.Props = m.Topic, m.Payload, m.Props
	if m.ExpiresAt != 0 {
		left := (m.ExpiresAt - now + 1e9 - 1) / 1e9
		p.Props.Set(codec.PropMessageExpiry)
		p.Props.MessageExpiry = uint32(max(left, 1))
	}
}

// appendRelayed encodes a relayed record (the batch's base is 0) of the
// message with forward id id, for client id's session (through its shared
// subscription filter, or "" for its ordinary ones).
func appendRelayed(dst []byte, p *codec.Packet, id uint64, client, filter string) []byte {
	if len(dst) == 0 {
		dst = binary.BigEndian.AppendUint64(append(dst, kindBatch), 0)
	}
	dst = binary.AppendUvarint(dst, relayToken)
	dst = binary.AppendUvarint(dst, id)
	dst = binary.AppendUvarint(dst, uint64(len(client)))
	dst = append(dst, client...)
	dst = binary.AppendUvarint(dst, uint64(len(filter)))
	dst = append(dst, filter...)
	return p.Encode(dst, codec.Version5)
}

// lengthPrefixed splits a uvarint length and that many bytes off b.
func lengthPrefixed(b []byte) (field, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return nil, nil, false
	}
	return b[n : n+int(l)], b[n+int(l):], true
}

// eachRecord calls fn for every record of a batch body (after the kind
// byte). p's slices, client and shared alias body.
func eachRecord(body []byte, p *codec.Packet, fn func(token uint32, id uint64, client, shared []byte, p *codec.Packet)) error {
	if len(body) < batchHeader-1 {
		return errWire
	}
	return records(body[batchHeader-1:], binary.BigEndian.Uint64(body), true, p, fn)
}

// eachRecordV1 is eachRecord for a batch body in the layout before forward
// ids (kindBatchV1): token and frame; no id (0), no relayed record (an
// older node's relay token is taken as its ordinary subscribers').
func eachRecordV1(body []byte, p *codec.Packet, fn func(token uint32, id uint64, client, shared []byte, p *codec.Packet)) error {
	return records(body, 0, false, p, fn)
}

// records reads the records of either layout: withIDs, each has its id
// (less base) after its token, and a relayed one its client and filter.
func records(body []byte, base uint64, withIDs bool, p *codec.Packet, fn func(token uint32, id uint64, client, shared []byte, p *codec.Packet)) error {
	dec := codec.Decoder{Version: codec.Version5}
	for len(body) > 0 {
		token, n := binary.Uvarint(body)
		if n <= 0 || token > 1<<32-1 {
			return errWire
		}
		body = body[n:]
		var id uint64
		var client, shared []byte
		switch {
		case withIDs:
			off, n := binary.Uvarint(body)
			if n <= 0 {
				return errWire
			}
			body, id = body[n:], base+off
			if token == relayToken {
				var ok bool
				if client, body, ok = lengthPrefixed(body); !ok {
					return errWire
				}
				if shared, body, ok = lengthPrefixed(body); !ok {
					return errWire
				}
			}
		case token == relayToken:
			token = 0
		}
		used, err := dec.Decode(body, p)
		if err != nil || p.Type != codec.PUBLISH {
			return errWire
		}
		fn(uint32(token), id, client, shared, p)
		body = body[used:]
	}
	return nil
}

// chunks cuts a batch bigger than max into chunk messages, passing each to
// send (which must copy it before returning); scratch is reused.
func chunks(batch []byte, id uint64, max int, scratch []byte, send func([]byte)) []byte {
	body := batch[1:]
	room := max - chunkHeader
	for off := 0; off < len(body); off += room {
		end := min(off+room, len(body))
		b := append(scratch[:0], kindChunk)
		b = binary.BigEndian.AppendUint64(b, id)
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
		b = binary.BigEndian.AppendUint32(b, uint32(off))
		b = append(b, body[off:end]...)
		send(b)
		scratch = b
	}
	return scratch
}

// partial is a batch being reassembled from its chunks.
type partial struct {
	buf  []byte
	last time.Time // when its last chunk came
}

// chunkIdle is how long a partial batch may wait for its next chunk: a
// sender's chunks come back to back, so a longer silence means it died (or
// restarted) mid-batch, and what it sent so far is freed.
const chunkIdle = 10 * time.Second

// assembler reassembles chunked batches: add on the node's subscription,
// sweep on its liveness goroutine.
type assembler struct {
	mu    sync.Mutex
	parts map[uint64]*partial
	idle  time.Duration // chunkIdle unless a test says otherwise
}

// sweep frees the partial batches that have waited longer than chunkIdle
// for their next chunk; it returns how many and their bytes.
func (a *assembler) sweep(now time.Time) (n, bytes int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	idle := a.idle
	if idle == 0 {
		idle = chunkIdle
	}
	for id, p := range a.parts {
		if now.Sub(p.last) > idle {
			n, bytes = n+1, bytes+len(p.buf)
			delete(a.parts, id)
		}
	}
	return n, bytes
}

// pending is the number of partial batches held.
func (a *assembler) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.parts)
}

// add takes one chunk message and returns the whole batch body once its last
// chunk arrives. Chunks of one batch come in order (one publisher, one
// subject, one connection).
func (a *assembler) add(msg []byte) (body []byte, done bool, err error) {
	if len(msg) < chunkHeader {
		return nil, false, errWire
	}
	id := binary.BigEndian.Uint64(msg[1:])
	total := int(binary.BigEndian.Uint32(msg[9:]))
	off := int(binary.BigEndian.Uint32(msg[13:]))
	data := msg[chunkHeader:]
	if total > maxChunkBody {
		return nil, false, errWire
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.parts == nil {
		a.parts = make(map[uint64]*partial)
	}
	p := a.parts[id]
	if p == nil {
		if off != 0 {
			return nil, false, errWire // its start was lost (a node restarted mid-batch)
		}
		p = &partial{buf: make([]byte, 0, total)}
		a.parts[id] = p
	}
	p.last = time.Now()
	if off != len(p.buf) || off+len(data) > total {
		delete(a.parts, id)
		return nil, false, errWire
	}
	p.buf = append(p.buf, data...)
	if len(p.buf) < total {
		return nil, false, nil
	}
	delete(a.parts, id)
	return p.buf, true, nil
}
