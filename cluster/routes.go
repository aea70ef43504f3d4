package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/trie"
)

// Routes: the bucket "midge-<cluster>-routes" holds one key per (node,
// filter), "<node>.<hash of filter>", written only by its node; the value
// is the shared-subscription token (4 bytes, 0 for ordinary filters) and
// the filter. Every node watches the bucket and subscribes a peer per
// remote node to that node's filters in its local trie.

func routeKey(node, filter string) string {
	h := sha256.Sum256([]byte(filter))
	return node + "." + hex.EncodeToString(h[:16])
}

// Subscription implements trie.Observer: a local filter's first subscriber
// announces it to the cluster, its last one withdraws it. Called under a
// trie lock: it only queues the change.
func (n *Node) Subscription(s trie.Subscriber, filter string, added bool) {
	if _, remote := s.(session.Remote); remote || isSys(filter) { // a peer, the local relay
		return
	}
	n.imu.Lock()
	defer n.imu.Unlock()
	in := n.interest[filter]
	if added {
		if in == nil {
			in = n.announceLocked(strings.Clone(filter))
		}
		in.n++
		return
	}
	if in == nil {
		return
	}
	if in.n--; in.n == 0 {
		delete(n.interest, filter)
		delete(n.tokens, in.token)
		n.queue(kvOp{key: routeKey(n.cfg.NodeName, filter)})
	}
}

// announceLocked makes the interest in filter (which it keeps) and queues
// its route. Assumes imu.
func (n *Node) announceLocked(filter string) *interest {
	in := &interest{made: time.Now()}
	if _, _, shared := trie.ParseShared(filter); shared {
		n.token++
		in.token = n.token
		n.tokens[in.token] = filter
	}
	n.interest[filter] = in
	val := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(filter)), in.token)
	n.queue(kvOp{key: routeKey(n.cfg.NodeName, filter), val: append(val, filter...), in: in})
	return in
}

// isSys: $SYS topics are each node's own, never routed.
func isSys(filter string) bool {
	if _, inner, ok := trie.ParseShared(filter); ok {
		filter = inner
	}
	return strings.HasPrefix(filter, "$SYS")
}

// queue adds a bucket write for the writer. Assumes imu.
func (n *Node) queue(op kvOp) {
	n.ops = append(n.ops, op)
	if n.writing {
		select {
		case n.opsReady <- struct{}{}:
		default:
		}
	}
}

// startWriter starts the goroutine that writes this node's route keys in
// the order their changes happened. Stale keys of an earlier run of this
// node (in the bucket, no longer held) are deleted first.
func (n *Node) startWriter() {
	n.rmu.Lock()
	own := n.own
	n.rmu.Unlock()
	n.imu.Lock()
	held := map[string]bool{}
	for f := range n.interest {
		held[routeKey(n.cfg.NodeName, f)] = true
	}
	var stale []kvOp
	for k := range own {
		if !held[k] {
			stale = append(stale, kvOp{key: k})
		}
	}
	n.ops = append(stale, n.ops...)
	n.writing = true
	n.imu.Unlock()
	select {
	case n.opsReady <- struct{}{}:
	default:
	}
	n.wg.Add(1)
	go n.writer()
}

func (n *Node) writer() {
	defer n.wg.Done()
	var stopped time.Time
	for {
		select {
		case <-n.stop:
			return
		case <-n.opsReady:
		}
		n.imu.Lock()
		ops := n.ops
		n.ops = nil
		n.imu.Unlock()
		var put []*interest
		var rev uint64
		for _, op := range ops {
			if n.leaving(&stopped, op) {
				continue
			}
			r := n.write(op)
			if op.in != nil {
				put, rev = append(put, op.in), max(rev, r)
			}
		}
		if len(put) > 0 {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.syncPeers(rev)
				n.settle(put)
			}()
		}
	}
}

// leaving reports whether the writer, the node stopping, skips op: a
// route's put (purgeOwn deletes the node's routes as it leaves), and any
// write once
// leaveWrites has passed since the stop was seen (*stopped): each waits for
// its answer, and without a quorum (the cluster's last node to stop) a
// long queue would hold the node for minutes. A delete skipped leaves a
// stale key, which the node deletes at its next start (startWriter).
func (n *Node) leaving(stopped *time.Time, op kvOp) bool {
	if stopped.IsZero() {
		select {
		case <-n.stop:
			*stopped = time.Now()
		default:
			return false
		}
	}
	return (op.val != nil && !op.retained) || time.Since(*stopped) > leaveWrites
}

// leaveWrites bounds the route deletes a stopping node still writes.
const leaveWrites = 2 * time.Second

// write applies one route change, retrying while JetStream is unavailable
// (a leader election); a route must not be lost. It returns a put's
// revision (0: a delete, or the node stopped first).
func (n *Node) write(op kvOp) uint64 {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var err error
		kv, key := n.routes, op.key
		if op.retained { // retained.go
			kv = n.retKV
		}
		var rev uint64
		if op.val != nil {
			rev, err = kv.Put(ctx, key, op.val)
		} else {
			err = kv.Delete(ctx, key)
		}
		cancel()
		if err == nil {
			return rev
		}
		if attempt == 0 {
			n.log.Printf("cluster %s: writing route %s: %v (retrying)", n.cfg.Name, op.key, err)
		}
		select {
		case <-n.stop:
			return 0
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// reannounce writes this node's route for filter again when the bucket
// lost it while the node still holds subscribers for it: a node that the
// others took for dead (a partition) had its routes deleted by them, and
// must not stay unreachable once it is heard again. Assumes rmu or nothing.
func (n *Node) reannounce(filter string) {
	n.imu.Lock()
	defer n.imu.Unlock()
	if in := n.interest[filter]; in != nil { // else withdrawn by this node itself
		n.reputLocked(filter, in)
	}
}

// reannounceAll writes all of this node's routes again (it rejoined the
// majority: they may have been deleted meanwhile).
func (n *Node) reannounceAll() {
	n.imu.Lock()
	defer n.imu.Unlock()
	for f, in := range n.interest {
		n.reputLocked(f, in)
	}
}

// reputLocked queues the put of filter's route. Assumes imu.
func (n *Node) reputLocked(filter string, in *interest) {
	val := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(filter)), in.token)
	n.queue(kvOp{key: routeKey(n.cfg.NodeName, filter), val: append(val, filter...)})
	n.Stats.RoutesRewritten.Add(1) // logged by the liveness goroutine
}

// purgeOwn deletes this node's route keys as it leaves.
func (n *Node) purgeOwn() {
	n.imu.Lock()
	keys := make([]string, 0, len(n.interest))
	for f := range n.interest {
		keys = append(keys, routeKey(n.cfg.NodeName, f))
	}
	n.imu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, k := range keys {
		if n.routes.Delete(ctx, k) != nil {
			return
		}
	}
}

// peer is a remote node: its filters are its subscriptions in the local
// trie (trie.Subscriber, session.Remote).
type peer struct {
	n       *Node
	name    string
	subject string
	slot    int
	routes  map[string]route // key → filter and token, as the bucket says
	alive   bool
	seen    time.Time
	incarn  string
	revs    map[string]uint64 // key → revision, for a purge that cannot remove a newer write
	removed time.Time
	hold    session.RemoteHold // it asks this node's publishers to wait (holdback.go)
	// confirms: it answers requests for confirmations (its heartbeat says
	// so); an older node is not asked (confirm.go)
	confirms atomic.Bool
}

type route struct {
	filter string
	token  uint32
}

var _ session.Remote = (*peer)(nil)

// Busy: a node that holds publishers back is a busy shared member.
func (p *peer) Busy() bool { return p.hold.Holding(time.Now().UnixNano()) }

// Hold implements session.Remote.
func (p *peer) Hold() *session.RemoteHold { return &p.hold }

// Slot implements session.Remote.
func (p *peer) Slot() int { return p.slot }

// Append implements session.Remote.
func (p *peer) Append(dst []byte, m *session.Message, token uint32, now int64) []byte {
	p.n.Stats.ForwardedMsgs.Add(1)
	return appendRecord(dst, m, token, now)
}

// Send implements session.Remote.
func (p *peer) Send(b []byte, confirm uint64) {
	p.n.send(p.subject, b)
	if confirm != 0 {
		p.n.askConfirm(p.subject, confirm) // confirm.go
	}
}

// peerLocked returns the peer of a node, making it. Assumes rmu.
func (n *Node) peerLocked(name string) *peer {
	p := n.peers[name]
	if p == nil {
		p = &peer{n: n, name: name, subject: n.prefix + "n." + name, routes: map[string]route{},
			revs: map[string]uint64{}, slot: n.takeSlot()} // a slot for good: a loop may hold p after it is gone
		n.peers[name] = p
	}
	return p
}

// setAlive puts a peer's routes into the trie (alive) or takes them out.
// Assumes rmu.
func (n *Node) setAliveLocked(p *peer, alive bool, why string) {
	if p.alive == alive {
		return
	}
	p.alive = alive
	t := n.b.Subs()
	if alive {
		for _, r := range p.routes {
			n.install(t, p, r)
		}
		n.Stats.PeersUp.Add(1)
		n.log.Printf("cluster %s: node %s up (%d routes; %d peers up)", n.cfg.Name, p.name, len(p.routes), n.Stats.PeersUp.Load())
		n.quorumLocked()
		return
	}
	removed := t.RemoveAll(p)
	n.Stats.Routes.Add(-int64(removed))
	p.removed = time.Now()
	n.Stats.PeersUp.Add(-1)
	n.log.Printf("cluster %s: node %s down (%s); %d of its routes removed; %d peers up", n.cfg.Name, p.name, why, removed, n.Stats.PeersUp.Load())
	n.quorumLocked()
}

// takeSlot returns a free slot. Assumes rmu.
func (n *Node) takeSlot() int {
	for i, used := range n.slots {
		if !used {
			n.slots[i] = true
			return i
		}
	}
	n.slots = append(n.slots, true)
	return len(n.slots) - 1
}

func (n *Node) install(t *trie.Trie, p *peer, r route) {
	// QoS 2: the receiving node downgrades per subscription; the token, as
	// the membership's id, comes back with a shared pick (session.deliverAll).
	if existed, err := t.Subscribe(p, r.filter, trie.Options{QoS: 2, ID: r.token}); err == nil && !existed {
		n.Stats.Routes.Add(1)
	}
}

// applyRoute takes one entry of the routes bucket. Assumes rmu.
func (n *Node) applyRouteLocked(e jetstream.KeyValueEntry) {
	node, _, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return
	}
	if node == n.cfg.NodeName {
		if e.Operation() == jetstream.KeyValuePut {
			n.own[e.Key()] = e.Revision()
			if v := e.Value(); len(v) >= 4 {
				n.ownFilter[e.Key()] = string(v[4:])
			}
			return
		}
		delete(n.own, e.Key())
		f, ok := n.ownFilter[e.Key()]
		delete(n.ownFilter, e.Key())
		if ok {
			n.reannounce(f)
		}
		return
	}
	p := n.peerLocked(node)
	t := n.b.Subs()
	old, had := p.routes[e.Key()]
	if v := e.Value(); had && e.Operation() == jetstream.KeyValuePut && len(v) >= 4 &&
		binary.BigEndian.Uint32(v) == old.token && string(v[4:]) == old.filter {
		// The same route again (a watch made again applies the whole
		// bucket): it stays in the trie, never out for a moment.
		p.revs[e.Key()] = e.Revision()
		n.relayRoute(node, old.filter)
		return
	}
	if had {
		delete(p.routes, e.Key())
		delete(p.revs, e.Key())
		if p.alive && t.Unsubscribe(p, old.filter) {
			n.Stats.Routes.Add(-1)
		}
	}
	v := e.Value()
	if e.Operation() != jetstream.KeyValuePut || len(v) < 4 {
		return
	}
	r := route{token: binary.BigEndian.Uint32(v), filter: string(v[4:])}
	if trie.ValidFilter(r.filter) != nil {
		return
	}
	p.routes[e.Key()] = r
	p.revs[e.Key()] = e.Revision()
	if p.alive {
		n.install(t, p, r)
	}
	n.relayRoute(node, r.filter) // relay.go
}

// loadRoutes reads the whole bucket, then keeps following it (watch.go).
// After a watch had to be made again, the routes the new one did not
// deliver are gone from the bucket: they leave the tries.
func (n *Node) loadRoutes(ctx context.Context) error {
	var seen map[string]bool
	return n.follow(ctx, n.routes, follower{what: "routes",
		begin: func(again bool) {
			n.rmu.Lock()
			seen = nil
			if again {
				seen = map[string]bool{}
			}
			n.rmu.Unlock()
		},
		apply: func(e jetstream.KeyValueEntry) {
			n.rmu.Lock()
			if seen != nil {
				seen[e.Key()] = true
			}
			n.applyRouteLocked(e)
			n.applied = max(n.applied, e.Revision())
			due := n.dueSyncsLocked()
			n.rmu.Unlock()
			n.answerSyncs(due)
		},
		ready: func(again bool) {
			if !again {
				return
			}
			n.rmu.Lock()
			defer n.rmu.Unlock()
			t := n.b.Subs()
			for k := range n.own {
				if !seen[k] {
					delete(n.own, k)
					if f, ok := n.ownFilter[k]; ok {
						delete(n.ownFilter, k)
						n.reannounce(f) // deleted by another node while the watch was down
					}
				}
			}
			for _, p := range n.peers {
				for k, r := range p.routes {
					if seen[k] {
						continue
					}
					delete(p.routes, k)
					delete(p.revs, k)
					if p.alive && t.Unsubscribe(p, r.filter) {
						n.Stats.Routes.Add(-1)
					}
				}
			}
			seen = nil
		},
	})
}
