package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/midge-mqtt/midge/store"
)

// Replicated session state: what must survive the death of the node that
// holds a session lives in the stream "midge-<cluster>-state", one subject
// per (node, session), "midge.<cluster>.s.<node>.<hash of client id>":
//
//	'S' uvarint(len id) id state   a snapshot (session.Install's form): the
//	                               record (subscriptions, expiry, the will
//	                               of its connection) and, offline, its queue
//	'M' record                     one message queued for the session while
//	                               it is offline (a store.Queued record)
//	'N' (uvarint(len) record)...   several, in order: the 'M' writes of one
//	                               round of the writer on one subject,
//	                               coalesced (coalesce.go)
//
// A snapshot replaces everything before it on its subject (purged up to its
// sequence). Snapshots are written when a persistent session or a client
// with a will connects, when its subscriptions change and when it goes
// offline; then each message queued for it while offline follows. Online
// sessions keep the fast path: what is delivered to a connected client is
// not replicated. A session that ends here is purged.
//
// When a node dies, the live node with the lowest name reads the dead
// node's subjects (one short-lived ordered consumer, never one per
// session), and for each session whose registry entry still names the dead
// node (a compare-and-set makes it its own): a persistent session is
// installed here, offline, with its queue, and is resumable on any node; the
// will of a client that was connected is published (after its delay) once,
// by the node that won the entry. A CONNECT on any node for a session of a
// dead node does the same for that session at once.

// With QuorumAcks (persistence_sync always), the publisher of a message
// queued for an offline persistent session is acknowledged only once its
// 'M' write is stored on the stream's quorum: Queued numbers each such
// write, the writer reports to the broker (Replicated) the number up to
// which every write is stored, and the broker's held acks wait for it
// (session: ackAfter). A write that fails or gets no answer within
// stateAckTimeout (JetStream without a quorum: a partition) is published
// again, in order, until it is stored or the node stops: its publisher's
// ack waits meanwhile (back-pressure; a publisher that gives up sends the
// message again on its next connection, as MQTT has it). A write that
// waited out a cut may be stored after the majority took its session over:
// such writes have their session's owner confirmed in the registry first,
// and if it moved, the acks held for them are void (checkOwners). What
// waits is bounded (maxStatePending bytes): past it a message is not
// replicated and its publisher is never acknowledged on this connection.

// stateOp is one write of the state writer.
type stateOp struct {
	kind    byte // 'S' snapshot, 'M' queued message, 'E' ended (purge), 'V' an 'M' not made
	subject string
	data    []byte
	num     uint64 // 'M' with QuorumAcks: its number (numbering), which its publisher's ack waits for
	ord     uint64 // 'M', 'V': its place among them (ordQueued)
}

const (
	// stateAckTimeout bounds the wait for JetStream's answer to one
	// asynchronous write; then it is written again.
	stateAckTimeout = 5 * time.Second
	// stateMaxInflight bounds the asynchronous writes awaiting an answer.
	stateMaxInflight = 4096
	// maxStatePending bounds the bytes of queued messages taken by the
	// writer and not yet stored on a quorum.
	maxStatePending = 64 << 20
)

// stateWriter writes a node's replicated session state in order.
type stateWriter struct {
	mu      sync.Mutex
	ops     []stateOp
	busy    bool // the writer has taken ops it has not finished (mu)
	pending int  // bytes of 'M' writes not yet stored (mu)
	// For other nodes' confirmations (confirm.go): the 'M' writes (and
	// 'V', those over the bound) are counted as queued (under mu), as
	// stored in order (ordStored: every one up to it is stored, or was
	// never to be), and ordVoid: those up to it may not count (never
	// made, or a cut gave their sessions to another node).
	ordQueued, ordStored, ordVoid atomic.Uint64
	// gate, set by tests, holds the writer until it is closed.
	gate   atomic.Pointer[chan struct{}]
	ready  chan struct{}
	stream jetstream.Stream
	held   map[string]bool // client ids with replicated state (guarded by mu)
	on     atomic.Bool     // bound and writing: a dead node's sessions can be taken
	// unwritten counts the changes queued and not yet through the writer:
	// while it is not 0, what the majority would take over if this node
	// were cut off now is behind (JetStream not answering, e.g. right
	// after a partition heals). $SYS .../sessions/state-pending.
	unwritten atomic.Int64
	// dropped counts the queued messages not replicated (over
	// maxStatePending), retried the writes published again.
	dropped atomic.Int64
	retried atomic.Int64
	voided  atomic.Int64
	// unsure: from a cut (minority) until the sessions held here are
	// checked against the registry (quorum.go: reconcile)
	unsure atomic.Bool
	// quietAt: when this node last heard no majority lately (liveness.go)
	quietAt  atomic.Int64
	lastDrop time.Time // mu: its log line at most every 10 s
}

func (n *Node) stateSubject(node, id string) string {
	return n.prefix + "s." + node + "." + sessionKey(id)
}

// startState binds the state stream, starts its writer and loads this
// node's own replicated sessions (a restart after a crash).
func (n *Node) startState(ctx context.Context, replicas int) error {
	cfg := jetstream.StreamConfig{Name: "midge-" + n.cfg.Name + "-state", Subjects: []string{n.prefix + "s.>"},
		Storage: jetstream.FileStorage, Replicas: replicas, MaxMsgSize: int32(n.max)}
	st, err := n.stream(ctx, cfg)
	if err != nil {
		return err
	}
	n.state.stream = st
	n.state.ready = make(chan struct{}, 1)
	n.state.held = map[string]bool{}
	n.adopt(ctx, n.cfg.NodeName)
	n.wg.Add(1)
	go n.stateLoop()
	n.state.on.Store(true)
	return nil
}

// queueState queues a write; for a queued message it returns what
// Queued returns.
func (n *Node) queueState(id string, op stateOp) uint64 {
	w := &n.state
	w.mu.Lock()
	switch op.kind {
	case 'E':
		if !w.held[id] {
			w.mu.Unlock()
			return 0 // nothing replicated: most clean sessions
		}
		delete(w.held, id)
	case 'M':
		op.ord = w.ordQueued.Add(1)
		if w.pending+len(op.data) > maxStatePending {
			w.dropped.Add(1)
			if now := time.Now(); now.Sub(w.lastDrop) >= 10*time.Second {
				w.lastDrop = now
				n.log.Printf("cluster %s: %d MiB of queued messages not yet replicated: a message queued for an offline session is not replicated (its publisher is not acknowledged)",
					n.cfg.Name, w.pending>>20)
			}
			maxStore(&w.ordVoid, op.ord)
			w.ops = append(w.ops, stateOp{kind: 'V', ord: op.ord}) // passed in order (confirm.go)
			w.unwritten.Add(1)
			w.mu.Unlock()
			w.kick()
			if n.cfg.QuorumAcks {
				return math.MaxUint64
			}
			return 0
		}
		w.pending += len(op.data)
		if n.cfg.QuorumAcks {
			op.num = n.nums.next()
		}
		w.held[id] = true
	default:
		w.held[id] = true
	}
	w.ops = append(w.ops, op)
	w.unwritten.Add(1)
	w.mu.Unlock()
	w.kick()
	return op.num
}

// kick wakes the writer.
func (w *stateWriter) kick() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// maxStore raises a to v if v is higher.
func maxStore(a *atomic.Uint64, v uint64) {
	for old := a.Load(); v > old && !a.CompareAndSwap(old, v); old = a.Load() {
	}
}

// Snapshot implements session.SessionCluster.
func (n *Node) Snapshot(id string, state []byte) {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(id)+len(state))
	b = append(b, 'S')
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(append(b, id...), state...)
	n.queueState(id, stateOp{kind: 'S', subject: n.stateSubject(n.cfg.NodeName, id), data: b})
}

// Queued implements session.SessionCluster.
func (n *Node) Queued(id string, rec []byte) uint64 {
	b := append(make([]byte, 0, 1+len(rec)), 'M')
	return n.queueState(id, stateOp{kind: 'M', subject: n.stateSubject(n.cfg.NodeName, id), data: append(b, rec...)})
}

// Ended implements session.SessionCluster.
func (n *Node) Ended(id string) {
	n.endedEntry(id) // sessions.go
	n.queueState(id, stateOp{kind: 'E', subject: n.stateSubject(n.cfg.NodeName, id)})
}

// stateLoop writes the queued state changes in order: queued messages
// asynchronously (in order on one connection), snapshots and purges once
// what came before them is stored.
func (n *Node) stateLoop() {
	defer n.wg.Done()
	w := &n.state
	var msgs []stateOp
	for {
		select {
		case <-n.stop:
			return
		case <-w.ready:
		}
		if g := w.gate.Load(); g != nil {
			select {
			case <-n.stop:
				return
			case <-*g:
			}
		}
		w.mu.Lock()
		ops := w.ops
		w.ops = nil
		w.busy = true
		w.mu.Unlock()
		for _, op := range ops {
			if op.kind == 'M' {
				msgs = append(msgs, op)
				continue
			}
			// A snapshot or a purge replaces what came before it on its
			// subject: that is stored first.
			if !n.writeQueued(msgs) {
				return
			}
			clear(msgs)
			msgs = msgs[:0]
			if op.kind == 'V' { // never written: passed, in order
				maxStore(&w.ordStored, op.ord)
				n.kickConfirms()
				continue
			}
			n.writeState(op)
		}
		if !n.writeQueued(msgs) {
			return
		}
		clear(msgs)
		msgs = msgs[:0]
		w.mu.Lock()
		w.busy = false
		w.mu.Unlock()
		w.unwritten.Add(-int64(len(ops)))
	}
}

// writeQueued publishes the queued messages ops, asynchronously and in
// order (stateMaxInflight at a time, those of a round on one subject
// coalesced: coalesce.go), and waits until each is stored on a quorum.
// Those that fail or get no answer (JetStream without a quorum) are
// published again, in order, after a pause, until they are stored; false:
// the node stops first. After each round the broker hears (Replicated) up
// to which number everything is stored.
func (n *Node) writeQueued(ops []stateOp) bool {
	w := &n.state
	limit := min(n.max, stateBatchMax)
	if n.cfg.stateBatchMax > 0 {
		limit = n.cfg.stateBatchMax
	}
	var futures []jetstream.PubAckFuture
	var again []stateOp
	var batches []stateBatch
	var ok []bool // by write of the round: stored
	open := map[string]int{}
	var failing time.Time
	pause := 100 * time.Millisecond
	for len(ops) > 0 {
		round := ops[:min(len(ops), stateMaxInflight)]
		lim := limit
		if !n.peersReadCoalesced() {
			lim = 0 // each write its own 'M'
		}
		batches = coalesce(round, lim, batches, open)
		send := batches
		if lim > 0 {
			// One stream message per subject in flight: should it fail
			// while a later one on its subject is stored, the queue's
			// order would break. The rest of a subject's writes (more than
			// a message holds) wait for the next round.
			clear(open)
			send = make([]stateBatch, 0, len(batches))
			for _, b := range batches {
				if _, dup := open[b.subject]; !dup {
					open[b.subject] = 0
					send = append(send, b)
				}
			}
		}
		start := time.Now()
		futures = futures[:0]
		var err error
		for i := range send {
			f, perr := n.stateJS.PublishAsync(send[i].subject, send[i].data)
			if perr != nil {
				err = perr
				break // the rest in the next round, in order
			}
			futures = append(futures, f)
		}
		ok = slices.Grow(ok[:0], len(round))[:len(round)]
		clear(ok)
		stored := 0
		for k, f := range futures {
			select {
			case <-f.Ok():
				// Every write of a coalesced message is stored with it.
				for _, i := range send[k].ops {
					ok[i] = true
					stored += len(round[i].data)
				}
			case e := <-f.Err():
				err = e
			case <-n.stop:
				return false
			}
		}
		for k := range batches {
			batches[k].data = nil // the publisher is done with it
		}
		again = again[:0]
		left := len(round) // the first write not stored
		for i := range round {
			if !ok[i] {
				again = append(again, round[i])
				left = min(left, i)
			}
		}
		// A write that had to wait for a quorum, or made around a cut, may
		// be for a session the majority took meanwhile (stored, but not
		// where its new owner reads): the sessions are checked first. The
		// majority takes them only after DeadAfter without hearing this
		// node, which heard no majority either meanwhile (quietAt).
		quiet := w.quietAt.Load() >= start.Add(-n.cfg.DeadAfter).UnixNano()
		if n.cfg.QuorumAcks && (!failing.IsZero() || w.unsure.Load() || quiet) && stored > 0 {
			if !n.checkOwners(round, again) {
				return false
			}
		}
		w.mu.Lock()
		w.pending -= stored
		w.mu.Unlock()
		// The writes stored complete their numbers; the broker hears up to
		// which number all have (numbering: the other nodes' confirmations
		// count too).
		var low uint64
		for i := range round {
			if ok[i] && round[i].num != 0 {
				low = n.nums.complete(round[i].num)
			}
		}
		if low > 0 {
			n.b.Replicated(low)
		}
		if left > 0 { // the other nodes' requests wait for these in order
			maxStore(&w.ordStored, round[left-1].ord)
			n.kickConfirms()
		}
		if len(again) > 0 && err == nil { // only writes left for the next round: no failure
			ops = append(append([]stateOp(nil), again...), ops[len(round):]...)
			continue
		}
		if len(again) == 0 {
			if !failing.IsZero() {
				n.log.Printf("cluster %s: queued messages replicated again after %v", n.cfg.Name, time.Since(failing).Round(time.Millisecond))
				failing = time.Time{}
			}
			ops = ops[len(round):]
			continue
		}
		if failing.IsZero() {
			failing = time.Now()
			n.log.Printf("cluster %s: replicating %d queued messages: %v (retrying; their publishers' acks wait)", n.cfg.Name, len(again), err)
		}
		w.retried.Add(int64(len(again)))
		ops = append(append([]stateOp(nil), again...), ops[len(round):]...)
		select {
		case <-n.stop:
			return false
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
	return true
}

// checkOwners confirms in the registry that the sessions of the writes of
// round that are not in again (those stored) are still this node's. If
// one is not, the acks that wait for any write numbered so far are void
// (Broker.VoidReplicated): their publishers send those messages again,
// which then go where the session is. false: the node stops first.
func (n *Node) checkOwners(round, again []stateOp) bool {
	seen := map[string]bool{}
	left := 0
	for i := range round {
		if left < len(again) && again[left].ord == round[i].ord { // again: those not stored, in order
			left++
			continue
		}
		seen[round[i].subject] = true
	}
	lost := 0
	for subject := range seen {
		key := subject[strings.LastIndexByte(subject, '.')+1:]
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			mine, err := n.confirmKey(ctx, key, "")
			cancel()
			if err == nil {
				if !mine {
					lost++
				}
				break
			}
			select {
			case <-n.stop:
				return false
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if lost > 0 {
		w := &n.state
		w.mu.Lock()
		upTo := n.nums.issued()
		maxStore(&w.ordVoid, w.ordQueued.Load())
		w.mu.Unlock()
		w.voided.Add(int64(lost))
		n.b.VoidReplicated(upTo)
		// The majority took them while this node missed being cut off (a
		// short cut): the sessions still held here go now, as after a
		// partition, not only when a next cut heals (quorum.go).
		if !n.closing.Load() && n.reconciling.CompareAndSwap(false, true) {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer n.reconciling.Store(false)
				n.reconcile()
			}()
		}
		n.log.Printf("cluster %s: %d sessions with messages queued here during a cut are now another node's: their publishers are asked to send them again",
			n.cfg.Name, lost)
	}
	return true
}

func (n *Node) writeState(op stateOp) {
	for attempt := 0; attempt < 25; attempt++ {
		if attempt > 0 {
			select {
			case <-n.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var err error
		if op.kind == 'S' {
			var ack *jetstream.PubAck
			if ack, err = n.js.Publish(ctx, op.subject, op.data); err == nil {
				err = n.state.stream.Purge(ctx, jetstream.WithPurgeSubject(op.subject), jetstream.WithPurgeSequence(ack.Sequence))
			}
		} else {
			err = n.state.stream.Purge(ctx, jetstream.WithPurgeSubject(op.subject))
		}
		cancel()
		if err == nil {
			return
		}
		if attempt == 0 {
			n.log.Printf("cluster %s: replicating session state (%c): %v (retrying)", n.cfg.Name, op.kind, err)
		}
	}
}

// replicated is one session's replicated state, read back.
type replicated struct {
	subject string
	id      string
	state   []byte   // the last snapshot
	extra   [][]byte // queued messages after it
}

// readState reads every session state under filter (a subject, or a
// node's wildcard), by subject: message after message, each the next one
// on filter from the last sequence read (a direct get, bounded by ctx; no
// consumer is made).
func (n *Node) readState(ctx context.Context, filter string) (map[string]*replicated, error) {
	out := map[string]*replicated{}
	for seq := uint64(1); ; {
		var m *jetstream.RawStreamMsg
		var err error
		for try := 0; try < 5 && ctx.Err() == nil; try++ {
			// Each get bounded on its own: one sent while the stream elects
			// a new leader gets no answer.
			gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			m, err = n.state.stream.GetMsg(gctx, seq, jetstream.WithGetMsgSubject(filter))
			cancel()
			if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
		}
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err == nil && m == nil {
			err = ctx.Err() // cancelled before a get was sent
		}
		if err != nil {
			return nil, err
		}
		seq = m.Sequence + 1
		r := out[m.Subject]
		if r == nil {
			r = &replicated{subject: m.Subject}
			out[m.Subject] = r
		}
		d := m.Data
		switch {
		case len(d) > 0 && d[0] == 'S':
			l, used := binary.Uvarint(d[1:])
			if used <= 0 || uint64(len(d)-1-used) < l {
				continue
			}
			r.id = string(d[1+used : 1+used+int(l)])
			r.state = d[1+used+int(l):]
			r.extra = nil
		case len(d) > 0 && d[0] == 'M' && r.state != nil:
			r.extra = append(r.extra, d[1:])
		case len(d) > 0 && d[0] == 'N' && r.state != nil:
			if r.extra, err = appendCoalesced(r.extra, d[1:]); err != nil {
				n.log.Printf("cluster %s: %s, sequence %d: %v (skipped)", n.cfg.Name, m.Subject, m.Sequence, err)
			}
		}
	}
}

// sessionRecord reads the record at the head of a snapshot's state.
func sessionRecord(id string, state []byte) (*store.Session, error) {
	l, used := binary.Uvarint(state)
	if used <= 0 || uint64(len(state)-used) < l {
		return nil, errors.New("cluster: malformed session snapshot")
	}
	return store.DecodeSession(id, state[used:used+int(l)])
}

// adopt takes over the replicated sessions of a node that is gone (or of
// this node, as it starts again): see the top of this file. Each read is
// bounded and retried: a request sent while the stream elects a new leader
// (its old one may be the dead node) gets no answer.
func (n *Node) adopt(ctx context.Context, dead string) {
	start := time.Now()
	var all map[string]*replicated
	for {
		actx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var err error
		all, err = n.readState(actx, n.prefix+"s."+dead+".>")
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			n.log.Printf("cluster %s: reading the sessions of node %s: %v", n.cfg.Name, dead, err)
			return
		}
		if n.adoptCancelled(dead) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	sessions, wills := 0, 0
	for _, r := range all {
		if r.state == nil {
			continue
		}
		if n.adoptCancelled(dead) {
			return
		}
		var ok, w bool
		for attempt := 0; attempt < 10 && ctx.Err() == nil; attempt++ {
			actx, cancel := context.WithTimeout(ctx, 3*time.Second)
			var retry bool
			ok, w, retry = n.adoptOne(actx, dead, r)
			cancel()
			if !retry {
				break
			}
		}
		if ok {
			sessions++
		}
		if w {
			wills++
		}
	}
	if len(all) > 0 || dead != n.cfg.NodeName {
		n.log.Printf("cluster %s: took over %d sessions of node %s (%d wills published) in %v", n.cfg.Name,
			sessions, dead, wills, time.Since(start).Round(time.Millisecond))
	}
	if dead != n.cfg.NodeName {
		n.purgeDeadEntries(ctx, dead, all)
	}
}

// purgeDeadEntries removes the registry entries that still name node dead
// and have no replicated state to adopt: its clean sessions, which ended
// with it. Each is purged up to the revision read, so an entry a live node
// wrote since (the client connected again) stays. Only another node's:
// no entry naming a dead node is written any more, while this node's own
// clients may claim theirs at any moment. A node that was only cut off
// writes the entries of the sessions it still holds again when it rejoins
// (quorum.go: confirmOwner).
func (n *Node) purgeDeadEntries(ctx context.Context, dead string, all map[string]*replicated) {
	w, err := n.sess.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		n.log.Printf("cluster %s: reading the registry for node %s's entries: %v", n.cfg.Name, dead, err)
		return
	}
	defer func() { _ = w.Stop() }()
	var ops []purgeOp
	for e := range w.Updates() {
		if e == nil {
			break // the entries held now are read
		}
		var se sessionEntry
		if json.Unmarshal(e.Value(), &se) != nil || se.Node != dead {
			continue
		}
		if r := all[n.stateSubject(dead, se.ID)]; r != nil && r.state != nil {
			continue // adopt's
		}
		ops = append(ops, purgeOp{key: e.Key(), rev: e.Revision()})
	}
	if ctx.Err() != nil {
		return
	}
	n.queuePurges(ops)
	if len(ops) > 0 {
		n.log.Printf("cluster %s: removing %d registry entries of node %s's clean sessions", n.cfg.Name, len(ops), dead)
	}
}

// adoptCancelled reports (and logs) that the sessions of node dead stay
// where they are: it is back (it was cut off, not dead), or this node is
// cut off itself (quorum.go).
func (n *Node) adoptCancelled(dead string) bool {
	if dead == n.cfg.NodeName {
		return false
	}
	why := ""
	switch {
	case n.minority.Load():
		why = "this node is cut off from the majority"
	case n.peerAlive(dead):
		why = "it is back"
	default:
		return false
	}
	n.log.Printf("cluster %s: not taking over the sessions of node %s: %s", n.cfg.Name, dead, why)
	return true
}

// adoptOne takes one replicated session of node dead, if the registry
// still says it is dead's, and reports whether it did, whether a will was
// published at once, and whether to try again (the registry did not answer).
func (n *Node) adoptOne(ctx context.Context, dead string, r *replicated) (adopted, will, retry bool) {
	rec, err := sessionRecord(r.id, r.state)
	if err != nil {
		n.log.Printf("cluster %s: session %q of node %s: %v", n.cfg.Name, r.id, dead, err)
		return false, false, false
	}
	key := sessionKey(r.id)
	e, err := n.sess.kv.Get(ctx, key)
	var cur sessionEntry
	switch {
	case err == nil && e.Operation() == jetstream.KeyValuePut:
		_ = json.Unmarshal(e.Value(), &cur)
	case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
		return false, false, true
	}
	if cur.Node != dead {
		if dead != n.cfg.NodeName {
			_ = n.state.stream.Purge(ctx, jetstream.WithPurgeSubject(r.subject)) // someone else has it now
		}
		return false, false, false
	}
	val, _ := json.Marshal(sessionEntry{Node: n.cfg.NodeName, ID: r.id, Expiry: rec.Expiry})
	if _, err := n.sess.kv.Update(ctx, key, val, e.Revision()); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return false, false, false // another node won it
		}
		return false, false, true
	}
	if rec.Expiry == 0 {
		if rec.Will != nil && rec.DisconnectedAt == 0 {
			n.b.PublishStored(rec.Will) // a clean session's will waits for nothing [MQTT-3.1.2-8]
			will = true
		}
		_ = n.state.stream.Purge(ctx, jetstream.WithPurgeSubject(r.subject))
		// Its entry stays, naming this node: the client, if its node was
		// only cut off, is disconnected there at the heal (quorum.go).
	} else if err := n.b.Install(r.id, r.state, r.extra, true); err != nil {
		n.log.Printf("cluster %s: session %q of node %s: %v", n.cfg.Name, r.id, dead, err)
		return false, false, false
	}
	if dead != n.cfg.NodeName {
		_ = n.state.stream.Purge(ctx, jetstream.WithPurgeSubject(r.subject))
	}
	return true, will, false
}

// adoptDead adopts a dead node's sessions off the liveness goroutine.
func (n *Node) adoptDead(name string) {
	if !n.state.on.Load() {
		return // still joining: its own start reads what it needs
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := n.stopContext(60 * time.Second)
		defer cancel()
		n.adopt(ctx, name)
	}()
}

// flushState waits (2 s at most: a node cut off must still stop within
// seconds) until the state writer has written what is queued: a node that
// stops leaves its sessions' last state for the node that adopts them.
func (n *Node) flushState() {
	if n.state.ready == nil {
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n.state.mu.Lock()
		done := len(n.state.ops) == 0 && !n.state.busy
		n.state.mu.Unlock()
		if done {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
