package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// Sessions: one session per client id across the cluster. The bucket
// "midge-<cluster>-sessions" holds one key per client id (a hash of it)
// naming the node that owns its session; it changes only by compare-and-set
// on its revision, so of two CONNECTs racing on two nodes one writes first
// and the other sees it and takes the session over in turn.
//
// A CONNECT on node B for a client id owned by live node A asks A (a NATS
// request on "midge.<cluster>.take.A") to hand the session over: A
// disconnects its client (v5 DISCONNECT 0x8E), ends the session there and
// replies with its state (subscriptions, inflight and queued messages,
// inbound QoS 2 ids) unless the new CONNECT starts clean; B writes itself
// into the registry, installs the state and answers the CONNECT (session
// present 1). A node that is in the middle of its own claim for the id
// answers "busy" and is asked again, so the later CONNECT always wins and
// only one connection remains. When the registry cannot be read or written
// within ClaimTimeout (a node cut off from the quorum), the CONNECT is
// refused with "server unavailable" (v5 0x88, v3 3) rather than waiting.

// sessions is a node's part in the registry.
type sessions struct {
	kv           jetstream.KeyValue
	stream       jetstream.Stream // the bucket's stream: entries are purged from it
	claims       claims
	revs         entryRevs
	takeovers    atomic.Int64 // sessions taken over from another node
	claimsFailed atomic.Int64 // CONNECTs refused: the registry did not answer in time
	reconciled   atomic.Int64 // sessions ended here after a partition: another node's now (quorum.go)
}

// claimTimeout bounds a CONNECT's wait for the registry.
func (n *Node) claimTimeout() time.Duration {
	if n.cfg.ClaimTimeout > 0 {
		return n.cfg.ClaimTimeout
	}
	return 5 * time.Second
}

// sessionEntry is a registry value.
type sessionEntry struct {
	Node   string `json:"node"`
	ID     string `json:"id"`
	Expiry uint32 `json:"expiry"`
}

const (
	takeBusy  = 'B' // the node is claiming the id itself: ask again
	takeNone  = 'N' // no session here
	takeEnded = 'E' // ended here, nothing to carry over
	takeState = 'S' // ended here, its state follows
)

// claims are the client ids this node is claiming, until the CONNECT that
// claimed one has opened its session.
type claims struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// entryRevs are the registry revisions this node wrote: of the claims whose
// session has not opened yet, and of the sessions open here. When a session
// ends here (a clean session's connection ends, a session expires), its
// entry is purged from the bucket up to the revision its claim wrote: an
// entry written since by a newer owner (another node, or a new connection
// here) has a higher revision and stays. Purged, not deleted: a delete
// leaves a marker per client id for good, and the bucket would grow with
// every client id ever seen.
type entryRevs struct {
	mu      sync.Mutex
	claimed map[string]uint64
	open    map[string]uint64
	purge   []purgeOp
	ready   chan struct{}
	purged  atomic.Int64
}

type purgeOp struct {
	key string
	rev uint64
}

// claimHold bounds how long a claim makes a handover wait (a CONNECT whose
// connection died before it was handled again never calls Opened).
const claimHold = 5 * time.Second

func sessionKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:16])
}

// startSessions binds the registry and answers handover requests.
func (n *Node) startSessions(ctx context.Context, replicas int) error {
	var err error
	if n.sess.kv, err = n.bucket(ctx, "sessions", replicas, 0, jetstream.FileStorage); err != nil {
		return err
	}
	n.sess.claims.m = map[string]time.Time{}
	if err := n.retryJS(ctx, "the registry's stream", func(actx context.Context) error {
		var err error
		n.sess.stream, err = n.js.Stream(actx, "KV_"+n.sess.kv.Bucket())
		return err
	}); err != nil {
		return err
	}
	n.sess.revs.claimed = map[string]uint64{}
	n.sess.revs.open = map[string]uint64{}
	n.sess.revs.ready = make(chan struct{}, 1)
	n.wg.Add(1)
	go n.purgeLoop()
	s, err := n.nc.Subscribe(n.prefix+"take."+n.cfg.NodeName, n.takeRequest)
	if err != nil {
		return err
	}
	n.subs = append(n.subs, s)
	n.b.SetSessionCluster(n)
	n.b.SetDedupWindow(dedupFor) // relay.go
	if err := n.startState(ctx, replicas); err != nil {
		return err
	}
	n.b.AddStats(func() []session.Stat {
		return []session.Stat{
			{Name: "cluster/sessions/taken-over", Help: "Sessions taken over from another node.", Value: n.sess.takeovers.Load(), Counter: true},
			{Name: "cluster/queue/replication-retries", Help: "Replicated writes of messages queued for offline sessions published again (failed, or no answer: no quorum).", Value: n.state.retried.Load(), Counter: true},
			{Name: "cluster/queue/voided", Help: "Sessions found another node's after a cut while messages queued for them here awaited a quorum (their publishers were asked to send again).", Value: n.state.voided.Load(), Counter: true},
			{Name: "cluster/forwards/confirms-asked", Help: "Forwarded batches whose publishers' acks waited for the receiving node's confirmation (persistence_sync always).", Value: n.conf.asked.Load(), Counter: true},
			{Name: "cluster/forwards/confirms-void", Help: "Forwarded batches not confirmed (the node died, did not answer in time, or could not keep what they queued): their publishers were asked to send again.", Value: n.conf.voided.Load(), Counter: true},
			{Name: "cluster/forwards/confirms-given", Help: "Confirmations this node gave other nodes for what they forwarded.", Value: n.conf.answered.Load(), Counter: true},
			{Name: "cluster/queue/unreplicated", Help: "Messages queued for offline sessions not replicated: too many bytes awaiting a quorum.", Value: n.state.dropped.Load(), Counter: true},
			{Name: "cluster/sessions/entries-removed", Help: "Registry entries removed as their sessions ended here.", Value: n.sess.revs.purged.Load(), Counter: true},
			{Name: "cluster/sessions/claims-failed", Help: "CONNECTs refused because the session registry did not answer in time.", Value: n.sess.claimsFailed.Load(), Counter: true},
			{Name: "cluster/sessions/state-pending", Help: "Session state changes (snapshots, messages queued for offline sessions, ends) not yet written to the cluster's stream.", Value: n.state.unwritten.Load()},
			{Name: "cluster/sessions/ended-after-partition", Help: "Sessions ended here after a partition because the registry gave them to another node meanwhile.", Value: n.sess.reconciled.Load(), Counter: true},
		}
	})
	return nil
}

// Claim implements session.SessionCluster.
func (n *Node) Claim(id string, cleanStart bool, expiry uint32, done func(code byte)) {
	n.sess.claims.mu.Lock()
	n.sess.claims.m[id] = time.Now()
	n.sess.claims.mu.Unlock()
	go func() { done(n.claim(id, cleanStart, expiry)) }()
}

// Opened implements session.SessionCluster.
func (n *Node) Opened(id string, open bool) {
	n.sess.claims.mu.Lock()
	delete(n.sess.claims.m, id)
	n.sess.claims.mu.Unlock()
	if !open {
		return // parked again (the claim stays), or refused
	}
	r := &n.sess.revs
	r.mu.Lock()
	if rev, ok := r.claimed[id]; ok {
		delete(r.claimed, id)
		r.open[id] = rev
	}
	r.mu.Unlock()
}

// endedEntry queues the purge of the registry entry of id's session, which
// ended here. Called under the session's lock: it only queues.
func (n *Node) endedEntry(id string) {
	r := &n.sess.revs
	r.mu.Lock()
	rev, ok := r.open[id]
	if ok {
		delete(r.open, id)
		r.purge = append(r.purge, purgeOp{key: sessionKey(id), rev: rev})
	}
	r.mu.Unlock()
	if ok {
		select {
		case r.ready <- struct{}{}:
		default:
		}
	}
}

// queuePurges queues the purges of registry entries, each up to its
// revision, for the purge loop.
func (n *Node) queuePurges(ops []purgeOp) {
	if len(ops) == 0 {
		return
	}
	r := &n.sess.revs
	r.mu.Lock()
	r.purge = append(r.purge, ops...)
	r.mu.Unlock()
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

// purgeLoop purges the registry entries of sessions that ended here, each
// only up to the revision this node wrote.
func (n *Node) purgeLoop() {
	defer n.wg.Done()
	r := &n.sess.revs
	subject := "$KV." + n.sess.kv.Bucket() + "."
	for {
		select {
		case <-n.stop:
			return
		case <-r.ready:
		}
		r.mu.Lock()
		ops := r.purge
		r.purge = nil
		r.mu.Unlock()
		for _, op := range ops {
			var err error
			for attempt := 0; attempt < 5; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err = n.sess.stream.Purge(ctx, jetstream.WithPurgeSubject(subject+op.key), jetstream.WithPurgeSequence(op.rev+1))
				cancel()
				if err == nil {
					r.purged.Add(1)
					break
				}
				select {
				case <-n.stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
			if err != nil {
				n.log.Printf("cluster %s: removing an ended session's registry entry: %v", n.cfg.Name, err)
			}
		}
	}
}

func (n *Node) claiming(id string) bool {
	n.sess.claims.mu.Lock()
	defer n.sess.claims.mu.Unlock()
	at, ok := n.sess.claims.m[id]
	if ok && time.Since(at) > claimHold {
		delete(n.sess.claims.m, id)
		return false
	}
	return ok
}

// claim writes this node into id's registry entry, taking the session over
// from its owner first.
func (n *Node) claim(id string, cleanStart bool, expiry uint32) byte {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), n.claimTimeout())
	defer cancel()
	key := sessionKey(id)
	val, _ := json.Marshal(sessionEntry{Node: n.cfg.NodeName, ID: id, Expiry: expiry})
	var op byte
	if !cleanStart {
		op = 1
	}
	req := takeReq(op, n.cfg.NodeName, id)
	from := "" // the node that handed the session over with its state (relay.go)
	var state []byte
	var dead *replicated // the session's state left by a dead owner
	deadNode := ""
	var lastErr error
	back := n.relayBack(id) // relay.go: it left this node earlier
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(min(attempt, 10)) * 10 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			n.log.Printf("cluster %s: session %q not claimed in %v: %v", n.cfg.Name, id, time.Since(start).Round(time.Millisecond), lastErr)
			n.sess.claimsFailed.Add(1)
			n.relayResume(back)
			return codec.ServerUnavailable
		}
		// Each request bounded on its own: one sent while a stream elects
		// a new leader gets no answer.
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		defer acancel()
		var rev uint64
		var cur sessionEntry
		e, err := n.sess.kv.Get(actx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			lastErr = err
			continue
		default:
			rev = e.Revision()
			if e.Operation() == jetstream.KeyValuePut {
				_ = json.Unmarshal(e.Value(), &cur)
			}
		}
		dead, deadNode = nil, ""
		if cur.Node != "" && cur.Node != n.cfg.NodeName && !n.peerAlive(cur.Node) {
			// Its node is gone: the session is taken from its replicated state.
			subject := n.stateSubject(cur.Node, id)
			all, err := n.readState(ctx, subject) // as long as the claim may take: a queue of many messages
			if err != nil {
				lastErr = err
				continue
			}
			if r := all[subject]; r != nil && r.state != nil {
				dead, deadNode = r, cur.Node
			}
		} else if cur.Node != "" && cur.Node != n.cfg.NodeName {
			msg, err := n.nc.RequestWithContext(actx, n.prefix+"take."+cur.Node, req)
			if err != nil {
				lastErr = err
				continue
			}
			if len(msg.Data) == 0 || msg.Data[0] == takeBusy {
				lastErr = errors.New("node " + cur.Node + " busy with the same client id")
				continue
			}
			if msg.Data[0] == takeState {
				state, from = msg.Data[1:], cur.Node
			}
			n.sess.takeovers.Add(1)
		}
		var wrote uint64
		if rev == 0 {
			wrote, err = n.sess.kv.Create(actx, key, val)
		} else {
			wrote, err = n.sess.kv.Update(actx, key, val, rev)
		}
		if err != nil {
			lastErr = err
			continue
		}
		n.sess.revs.mu.Lock()
		n.sess.revs.claimed[id] = wrote
		n.sess.revs.mu.Unlock()
		break
	}
	switch {
	case state != nil && !cleanStart:
		time.Sleep(time.Duration(n.installDelay.Load()))
		if err := n.b.Install(id, state, nil, false); err != nil {
			n.log.Printf("cluster %s: session %q handed over unreadable: %v", n.cfg.Name, id, err)
		}
	case dead != nil:
		tctx, tcancel := context.WithTimeout(context.Background(), 3*time.Second)
		n.takeDead(tctx, deadNode, dead, cleanStart)
		tcancel()
	}
	n.relayHome(back, !cleanStart) // what came here for it since it left
	if state != nil && !cleanStart {
		// The old node passes on what it kept for the session meanwhile.
		_, _ = n.nc.Request(n.prefix+"take."+from, takeReq(takeDone, n.cfg.NodeName, id), 2*time.Second)
	}
	return codec.Success
}

// takeRequest hands a session over to the node that asks. Runs on the
// subscription's goroutine.
func (n *Node) takeRequest(msg *nats.Msg) {
	op, node, id, ok := parseTakeReq(msg.Data)
	if !ok {
		return
	}
	if op == takeDone {
		n.relayDone(id, node)
		_ = msg.Respond([]byte{takeEnded})
		return
	}
	resume := op == 1
	if n.claiming(id) {
		_ = msg.Respond([]byte{takeBusy})
		return
	}
	// The taker writes the entry over: the session ending here leaves it.
	n.sess.revs.mu.Lock()
	delete(n.sess.revs.open, id)
	n.sess.revs.mu.Unlock()
	var m *moved
	if resume {
		m = n.relayStart(id, node) // before the handover: nothing between is lost
	}
	var state []byte
	var found bool
	if resume {
		state, found = n.handOver(m, id) // relay.go: on the receive goroutine
	} else {
		state, found = n.b.HandOver(id, false)
	}
	switch {
	case !found:
		n.relayCancel(m)
		_ = msg.Respond([]byte{takeNone})
	case state == nil:
		n.relayCancel(m)
		_ = msg.Respond([]byte{takeEnded})
	default:
		if len(state)+1 > n.max {
			n.log.Printf("cluster %s: session %q is %d bytes, over NATS's %d: handed over without its queue",
				n.cfg.Name, id, len(state), n.max)
			n.relayCancel(m)
			_ = msg.Respond([]byte{takeEnded})
			return
		}
		_ = msg.Respond(append([]byte{takeState}, state...))
	}
}

// peerAlive reports whether a node has been heard from within DeadAfter.
func (n *Node) peerAlive(name string) bool {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	p := n.peers[name]
	return p != nil && p.alive
}

// takeDead makes the replicated session of a dead node's client this
// node's, for a CONNECT that claimed it: resumed with its queue, or, with
// clean start, ended (the will of a connection the crash ended, without a
// delay, is published: a new connection cancels only a delayed one
// [MQTT-3.1.2-8]).
func (n *Node) takeDead(ctx context.Context, node string, r *replicated, cleanStart bool) {
	rec, err := sessionRecord(r.id, r.state)
	switch {
	case err != nil:
		n.log.Printf("cluster %s: session %q of node %s: %v", n.cfg.Name, r.id, node, err)
	case cleanStart || rec.Expiry == 0:
		if rec.Will != nil && rec.DisconnectedAt == 0 && (rec.WillDelay == 0 || rec.Expiry == 0) {
			n.b.PublishStored(rec.Will)
		}
	default:
		if err := n.b.Install(r.id, r.state, r.extra, true); err != nil {
			n.log.Printf("cluster %s: session %q of node %s: %v", n.cfg.Name, r.id, node, err)
		}
	}
	_ = n.state.stream.Purge(ctx, jetstream.WithPurgeSubject(r.subject))
	n.sess.takeovers.Add(1)
}
