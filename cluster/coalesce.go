package cluster

import (
	"encoding/binary"
	"errors"
)

// Coalesced writes: the queued messages of one writer round that go to the
// same session's subject are one stream message, so that RAFT, the file
// store and the PubAck are paid once per round and session rather than once
// per message:
//
//	'N' (uvarint(len record) record)...   several queued messages, in order
//	                                      (each a store.Queued record)
//
// A message alone stays an 'M' (readers take both).

// stateBatchMax bounds a coalesced stream message below NATS's max payload:
// each is one RAFT entry sent to every replica, and a few MiB would hold up
// the stream's other writes and heartbeats behind it.
const stateBatchMax = 1 << 20

// stateBatch is one stream message of a writer round: the queued messages
// round[ops[0]], round[ops[1]], ... of one subject, in order.
type stateBatch struct {
	subject string
	data    []byte
	ops     []int
}

// coalesce groups the writes of round ('M' ops) by subject into stream
// messages of at most limit bytes, keeping their order on each subject; the
// batches come out in the order of their first write. A write whose 'M' is
// already over limit alone is one message on its own, as it was queued.
// into and open are reused (scratch).
func coalesce(round []stateOp, limit int, into []stateBatch, open map[string]int) []stateBatch {
	clear(open)
	into = into[:cap(into)]
	for i, b := range into {
		into[i] = stateBatch{ops: b.ops[:0]}
	}
	into = into[:0]
	var sizes []int
	for i := range round {
		rec := len(round[i].data) - 1
		add := uvarintLen(uint64(rec)) + rec
		if b, ok := open[round[i].subject]; ok && sizes[b]+add <= limit {
			into[b].ops = append(into[b].ops, i)
			sizes[b] += add
			continue
		}
		open[round[i].subject] = len(into)
		sizes = append(sizes, 1+add)
		if len(into) < cap(into) {
			into = into[:len(into)+1]
			into[len(into)-1].subject = round[i].subject
			into[len(into)-1].ops = append(into[len(into)-1].ops, i)
		} else {
			into = append(into, stateBatch{subject: round[i].subject, ops: []int{i}})
		}
	}
	for b := range into {
		ops := into[b].ops
		if len(ops) == 1 {
			into[b].data = round[ops[0]].data
			continue
		}
		// A new buffer each time: the publisher holds it until its PubAck.
		d := make([]byte, 1, sizes[b])
		d[0] = 'N'
		for _, i := range ops {
			rec := round[i].data[1:]
			d = binary.AppendUvarint(d, uint64(len(rec)))
			d = append(d, rec...)
		}
		into[b].data = d
	}
	return into
}

// peersReadCoalesced reports whether every live node reads 'N': their
// heartbeat says "up K" (liveness.go), a release that does. An older node
// in a rolling upgrade would skip coalesced writes if it took this node's
// sessions over; while one is up, each write stays an 'M'.
func (n *Node) peersReadCoalesced() bool {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	for _, p := range n.peers {
		if p.alive && !p.confirms.Load() {
			return false
		}
	}
	return true
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

var errCoalesced = errors.New("cluster: malformed coalesced queued messages")

// appendCoalesced appends to dst the records of an 'N' message's body (what
// follows 'N'), as slices of body; malformed: dst as it was, and an error.
func appendCoalesced(dst [][]byte, body []byte) ([][]byte, error) {
	was := len(dst)
	for len(body) > 0 {
		l, used := binary.Uvarint(body)
		if used <= 0 || uint64(len(body)-used) < l {
			return dst[:was], errCoalesced
		}
		end := used + int(l)
		dst = append(dst, body[used:end:end])
		body = body[end:]
	}
	return dst, nil
}
