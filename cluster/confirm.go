package cluster

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Confirmed forwards (QuorumAcks): a QoS 1/2 message that node A forwards
// to node B may be queued there for an offline persistent session, and is
// then B's to replicate (sessionstate.go). A's publisher is acknowledged
// only once B confirms that what the batch changed is stored: on B's disk
// and, for messages queued for its offline sessions, on the state stream's
// quorum. A numbers the confirmation (numbering, shared with its own
// replicated writes, so that one number is what an ack waits for) and
// sends, after the batch on B's subject, "K" number; B answers on A's
// confirmation subject ("midge.<cluster>.hold.<A>.k") with number and
// confirmOK, or confirmVoid when a write of that time may not count (a cut
// gave the session to another node, or the write was over the bound and
// never made). B's subject is read in order, so "K" comes after everything
// A sent before it: B waits until what it has stored so far is durable and
// what it has queued for replication so far is on the quorum (a bound from
// above, never a wait for another node: no two nodes can wait on each
// other).
//
// A node asks only the nodes whose heartbeat says they answer ("up K"): an
// older node, in a rolling upgrade, is not asked, and what is forwarded to
// it is acknowledged as before. A node without persistence_sync always
// answers without waiting for its own store's sync.
//
// An answer that does not come within confirmTimeout, or a node that dies
// first, voids the number (Broker.VoidReplicated): the publishers whose
// acks waited for it are disconnected (v5 0x89) and send those messages
// again, as MQTT has it [MQTT-4.4.0-1]. Over-voiding (every ack held up to
// the number) costs duplicates, never a loss.
const (
	kindConfirm    = 'K'
	confirmOK      = 0
	confirmVoid    = 1
	confirmTimeout = 10 * time.Second
)

// numbering hands out the numbers that held acks wait for: one per
// replicated write of a message queued for an offline session, one per
// forwarded batch to be confirmed. They complete in any order; the broker
// hears the number up to which all have (Broker.Replicated).
type numbering struct {
	mu   sync.Mutex
	last uint64 // the last number handed out
	low  uint64 // every number up to it has completed
	done []bool // numbers low+1 ... last: completed yet?
}

// next hands out a number.
func (q *numbering) next() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.last++
	q.done = append(q.done, false)
	return q.last
}

// issued is the last number handed out.
func (q *numbering) issued() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.last
}

// complete notes that k has completed and returns the number up to which
// all have.
func (q *numbering) complete(k uint64) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if k > q.low && k <= q.last {
		q.done[k-q.low-1] = true
	}
	i := 0
	for i < len(q.done) && q.done[i] {
		i++
	}
	q.low += uint64(i)
	q.done = q.done[i:] // an append reallocates what was passed
	return q.low
}

// confirms is both sides of confirmed forwards.
type confirms struct {
	mu sync.Mutex
	// Asked of other nodes: number → who and since when.
	waiting map[uint64]confirmWait
	// Asked by other nodes, in the order asked (their bounds grow).
	asks  []confirmAsk
	ready chan struct{}

	asked, voided, answered atomic.Int64 // $SYS counters
}

type confirmWait struct {
	node string
	at   time.Time
	// hi: the last number handed out when the request was sent (0: not
	// yet, its loop turn is under way). Every ack that waits for this
	// confirmation waits for a number up to hi (the highest of its
	// numbers), so a void covers up to hi.
	hi uint64
}

// confirmAsk is another node's request, answered once the store is durable
// up to seq and the state writer has stored its queued writes up to ord.
// void: answered confirmVoid if a write numbered from open on was voided.
type confirmAsk struct {
	to             string
	num            uint64
	seq, ord, open uint64
	lost           bool // forwards dropped before it (a slow consumer): void
}

// Confirm implements session.Remote.
func (p *peer) Confirm() uint64 {
	n := p.n
	if !n.cfg.QuorumAcks || !p.confirms.Load() {
		return 0 // an older node (a rolling upgrade): its forwards are not confirmed
	}
	k := n.nums.next()
	n.conf.mu.Lock()
	n.conf.waiting[k] = confirmWait{node: p.name, at: time.Now()}
	n.conf.mu.Unlock()
	n.conf.asked.Add(1)
	return k
}

// askConfirm sends the request for confirmation k after a batch on subject.
func (n *Node) askConfirm(subject string, k uint64) {
	var b [9]byte
	b[0] = kindConfirm
	binary.BigEndian.PutUint64(b[1:], k)
	hi := n.nums.issued() // after the turn's deliveries: every number its acks wait for
	n.conf.mu.Lock()
	if w, ok := n.conf.waiting[k]; ok {
		w.hi = hi
		n.conf.waiting[k] = w
	}
	n.conf.mu.Unlock()
	_ = n.nc.PublishRequest(subject, n.holdSub, b[:])
}

func (n *Node) confirmSubject(holdSub string) string { return holdSub + ".k" }

// confirmAnswered takes another node's confirmation. Runs on the
// subscription's goroutine.
func (n *Node) confirmAnswered(msg *nats.Msg) {
	if len(msg.Data) != 9 {
		return
	}
	n.settleConfirm(binary.BigEndian.Uint64(msg.Data), msg.Data[8] == confirmOK)
}

// settleConfirm completes confirmation k (void: its acks are never sent).
func (n *Node) settleConfirm(k uint64, ok bool) {
	n.conf.mu.Lock()
	w, asked := n.conf.waiting[k]
	delete(n.conf.waiting, k)
	n.conf.mu.Unlock()
	if !asked {
		return // settled already (timed out)
	}
	if !ok {
		n.conf.voided.Add(1)
		// An ack waits for the highest of its numbers: one that waits for
		// k too may wait for a higher one (another node's, a write of its
		// own); void them all, before k counts as complete.
		n.b.VoidReplicated(max(k, w.hi))
	}
	n.b.Replicated(n.nums.complete(k))
}

// sweepConfirms voids the confirmations asked of a node that died or that
// did not answer within confirmTimeout. Liveness goroutine; not under rmu.
func (n *Node) sweepConfirms(now time.Time) {
	if !n.cfg.QuorumAcks {
		return
	}
	n.conf.mu.Lock()
	asked := make(map[string]bool)
	for _, w := range n.conf.waiting {
		asked[w.node] = true
	}
	n.conf.mu.Unlock()
	if len(asked) == 0 {
		return
	}
	for node := range asked {
		asked[node] = n.peerAlive(node)
	}
	var late []uint64
	var from string
	n.conf.mu.Lock()
	for k, w := range n.conf.waiting {
		if w.hi == 0 {
			continue // its turn is under way: voided once sent
		}
		if alive, known := asked[w.node]; (known && !alive) || now.Sub(w.at) > confirmTimeout {
			late, from = append(late, k), w.node
		}
	}
	n.conf.mu.Unlock()
	for _, k := range late {
		n.settleConfirm(k, false)
	}
	if len(late) > 0 {
		n.log.Printf("cluster %s: %d forwarded batches not confirmed (node %s gone, or no answer within %v): their publishers are asked to send them again",
			n.cfg.Name, len(late), from, confirmTimeout)
	}
}

// confirmAsked takes a "K" request from the sender h (receive goroutine).
func (n *Node) confirmAsked(h *holdback, data []byte) {
	if len(data) != 9 {
		n.log.Printf("cluster %s: dropped a malformed confirmation request", n.cfg.Name)
		return
	}
	ord := n.state.ordQueued.Load()
	open := h.open
	if open == 0 {
		open = ord + 1 // nothing forwarded since its last request
	}
	h.open = 0
	// Core NATS may drop a batch (this node's subscription over its
	// pending limit) and still pass the small "K" after it: whatever was
	// dropped since the sender's last request may have been its.
	var lost bool
	if sub := n.fwdSub.Load(); sub != nil {
		if d, err := sub.Dropped(); err == nil {
			lost, h.dropped = d != h.dropped, d
		}
	}
	var seq uint64 // with persistence_sync always, what is stored so far must be synced
	if n.cfg.QuorumAcks {
		seq, _ = n.b.StoreProgress()
	}
	if h.answer == "" {
		h.answer = n.confirmSubject(h.reply)
	}
	n.conf.mu.Lock()
	n.conf.asks = append(n.conf.asks, confirmAsk{to: h.answer, num: binary.BigEndian.Uint64(data[1:]), seq: seq, ord: ord, open: open, lost: lost})
	n.conf.mu.Unlock()
	n.kickConfirms()
}

// kickConfirms has the confirmer look at its requests again. Any goroutine.
func (n *Node) kickConfirms() {
	select {
	case n.conf.ready <- struct{}{}:
	default:
	}
}

// confirmLoop answers the other nodes' requests, in order, as the store
// and the state writer get there.
func (n *Node) confirmLoop() {
	defer n.wg.Done()
	t := time.NewTicker(100 * time.Millisecond) // besides the kicks: nothing is missed
	defer t.Stop()
	var due []confirmAsk
	for {
		select {
		case <-n.stop:
			return
		case <-n.conf.ready:
		case <-t.C:
		}
		_, durable := n.b.StoreProgress()
		stored, void := n.state.ordStored.Load(), n.state.ordVoid.Load()
		n.conf.mu.Lock()
		k := 0
		for k < len(n.conf.asks) && n.conf.asks[k].seq <= durable && n.conf.asks[k].ord <= stored {
			k++
		}
		due = append(due[:0], n.conf.asks[:k]...)
		n.conf.asks = n.conf.asks[:copy(n.conf.asks, n.conf.asks[k:])]
		n.conf.mu.Unlock()
		for _, a := range due {
			var b [9]byte
			binary.BigEndian.PutUint64(b[:], a.num)
			if void >= a.open || a.lost {
				b[8] = confirmVoid
			}
			_ = n.nc.Publish(a.to, b[:])
			n.conf.answered.Add(1)
		}
	}
}
