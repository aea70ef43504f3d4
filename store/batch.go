package store

// Batch collects changes that are committed together, atomically. It is not
// safe for concurrent use; it may be reused after Submit returns (Reset).
// Methods encode and copy what they are given, so the caller's buffers may
// change right after a call.
type Batch struct {
	buf []byte // keys and values of all ops, back to back
	ops []op
}

type opKind uint8

const (
	opSet          opKind = iota // key = value
	opDelete                     // delete key
	opDeleteRange                // delete [key, value)
	opSingleDelete               // delete key, written exactly once since it last did not exist
)

// op is one change; its key and value are buf[k:v] and buf[v:e].
type op struct {
	kind    opKind
	k, v, e int
}

// NewBatch returns an empty batch.
func NewBatch() *Batch { return &Batch{} }

// Reset empties b, keeping its memory.
func (b *Batch) Reset() {
	b.buf = b.buf[:0]
	b.ops = b.ops[:0]
}

// Len is the number of changes in b (DeleteSession counts as three).
func (b *Batch) Len() int { return len(b.ops) }

// mark is where the next key or value starts in buf.
func (b *Batch) mark() int { return len(b.buf) }

func (b *Batch) set(k, v int) { b.ops = append(b.ops, op{opSet, k, v, len(b.buf)}) }

func (b *Batch) del(k int) { b.ops = append(b.ops, op{opDelete, k, len(b.buf), len(b.buf)}) }

func (b *Batch) delRange(k, v int) { b.ops = append(b.ops, op{opDeleteRange, k, v, len(b.buf)}) }

// PutRetained stores m as the retained message of its topic.
func (b *Batch) PutRetained(m *Message) {
	k := b.mark()
	b.buf = append(append(b.buf, kindRetained), m.Topic...)
	v := b.mark()
	b.buf = encodeRetained(b.buf, m)
	b.set(k, v)
}

// DeleteRetained removes the retained message of topic.
func (b *Batch) DeleteRetained(topic []byte) {
	k := b.mark()
	b.buf = append(append(b.buf, kindRetained), topic...)
	b.del(k)
}

// PutSession stores s, replacing the session of the same client id (its
// queued messages and awaiting-PUBREL ids stay).
func (b *Batch) PutSession(s *Session) {
	k := b.mark()
	b.buf = append(append(b.buf, kindSession), s.ClientID...)
	v := b.mark()
	b.buf = encodeSession(b.buf, s)
	b.set(k, v)
}

// DeleteSession removes the session of clientID with its queued messages and
// awaiting-PUBREL ids.
func (b *Batch) DeleteSession(clientID string) {
	k := b.mark()
	b.buf = append(append(b.buf, kindSession), clientID...)
	b.del(k)
	for _, kind := range [...]byte{kindQueued, kindAwait} {
		k = b.mark()
		b.buf = appendClientPrefix(b.buf, kind, clientID)
		v := b.mark()
		b.buf = append(b.buf, prefixEnd(b.buf[k:v])...)
		b.delRange(k, v)
	}
}

// PutQueued stores q under its client id and Seq, replacing a previous
// version (for example once it has a packet id, or PUBREL was sent).
func (b *Batch) PutQueued(q *Queued) {
	k := b.mark()
	b.buf = appendQueuedKey(b.buf, q.ClientID, q.Seq)
	v := b.mark()
	b.buf = encodeQueued(b.buf, q)
	b.set(k, v)
}

// DeleteQueued removes the queued message seq of clientID (delivered and
// acknowledged, expired or dropped).
func (b *Batch) DeleteQueued(clientID string, seq uint64) {
	k := b.mark()
	b.buf = appendQueuedKey(b.buf, clientID, seq)
	b.del(k)
}

// DeleteQueuedOnce removes the queued message seq of clientID, which was
// stored once and never replaced (a QoS 1 message, or a QoS 2 message that
// was never sent). The database drops such a delete together with its put
// when they meet, instead of keeping a tombstone through its compactions:
// a subscriber that keeps up then costs the log and little else.
func (b *Batch) DeleteQueuedOnce(clientID string, seq uint64) {
	k := b.mark()
	b.buf = appendQueuedKey(b.buf, clientID, seq)
	b.ops = append(b.ops, op{opSingleDelete, k, len(b.buf), len(b.buf)})
}

// PutCounter stores the total of the broker counter name (what $SYS reports
// as totals since the first start, for example messages received).
func (b *Batch) PutCounter(name string, v uint64) {
	k := b.mark()
	b.buf = append(append(b.buf, kindCounter), name...)
	v0 := b.mark()
	b.buf = appendUvarint(b.buf, v)
	b.set(k, v0)
}

// PutAwaitingRel records that the QoS 2 PUBLISH id of clientID was received
// and PUBREC sent, so that a resent PUBLISH with that id is not delivered
// again after a restart [MQTT-4.3.3-2].
func (b *Batch) PutAwaitingRel(clientID string, id uint16) {
	k := b.mark()
	b.buf = appendAwaitKey(b.buf, clientID, id)
	b.set(k, len(b.buf))
}

// DeleteAwaitingRel forgets id once PUBREL has arrived.
func (b *Batch) DeleteAwaitingRel(clientID string, id uint16) {
	k := b.mark()
	b.buf = appendAwaitKey(b.buf, clientID, id)
	b.del(k)
}
