// Package cluster joins midge nodes into one broker over NATS: an embedded
// nats-server (routes between the nodes, JetStream key-value buckets for the
// cluster's state) or an external NATS cluster. It sits beside session/ and
// uses only what session/ and trie/ export:
//
//   - routes: each node writes one key per filter it holds subscribers for
//     (never per client) and watches the others'; a remote node's filters
//     are the subscriptions of one pseudo-subscriber (a session.Remote) in
//     the local trie, so one match yields local and remote targets together;
//   - forwarding: a loop turn's messages for a node go in one NATS publish
//     on that node's subject, the MQTT topic inside the payload (wire.go);
//   - retained messages: a bucket watched into every node's retained store;
//   - liveness: heartbeats on core NATS; a silent node's routes are dropped.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/trie"
)

// Config is a node's cluster settings (the cluster_* keys).
type Config struct {
	Name     string   // cluster_name; default "midge"
	NodeName string   // cluster_node_name; default: the host name
	Listen   string   // cluster_listen HOST:PORT (port 0: any free port)
	Peers    []string // cluster_peers HOST:PORT ...
	StoreDir string   // cluster_store: JetStream's directory
	NATSURL  string   // cluster_nats_url: external NATS; no embedded server

	Logger *log.Logger
	// JoinTimeout bounds Start (the JetStream cluster forming, the state
	// loading); default 60 s.
	JoinTimeout time.Duration
	// Heartbeat is how often a node says it is alive (default 250 ms);
	// DeadAfter is the silence after which its routes are dropped (default
	// 12 heartbeats).
	Heartbeat time.Duration
	DeadAfter time.Duration
	// ClaimTimeout bounds a CONNECT's wait for the session registry
	// (sessions.go); default 5 s.
	ClaimTimeout time.Duration
	// QuorumAcks (persistence with persistence_sync always): a QoS 1/2
	// message queued for an offline persistent session is acknowledged to
	// its publisher only once its replicated copy is stored on a quorum
	// (sessionstate.go). Otherwise that copy is written asynchronously.
	QuorumAcks bool

	// natsOpts, set by tests, changes the embedded server's options.
	natsOpts func(*server.Options)
	// stateBatchMax, set by tests, bounds a coalesced state write
	// (0: stateBatchMax, coalesce.go).
	stateBatchMax int
}

// Stats are the node's cluster counters ($SYS/broker/cluster/..., /metrics).
type Stats struct {
	PeersUp          atomic.Int64 // other nodes heard from within DeadAfter
	Routes           atomic.Int64 // remote (node, filter) routes in the local trie
	ForwardedMsgs    atomic.Int64 // messages sent to other nodes (one per node)
	ForwardedBytes   atomic.Int64 // bytes of the NATS messages carrying them
	ReceivedMsgs     atomic.Int64 // messages received from other nodes
	ReceivedBytes    atomic.Int64
	RetainedReplicas atomic.Int64 // retained changes applied from the bucket
	HoldsReceived    atomic.Int64 // times another node asked this one to hold its publishers
	RelayedMsgs      atomic.Int64 // messages passed on to the node a session moved to (relay.go)
	RelayDropped     atomic.Int64 // messages for it dropped: too many kept before it installed the session
	Minority         atomic.Int64 // 1 while this node hears fewer than half of the others (quorum.go)
	RoutesRewritten  atomic.Int64 // own routes written again after another node deleted them
	WatchRestarts    atomic.Int64 // watches of a bucket made again after they ended or stalled (watch.go)
}

// Node is this broker's membership in a cluster.
type Node struct {
	cfg   Config
	b     *session.Broker
	log   *log.Logger
	Stats Stats
	ns    *server.Server // nil with an external NATS
	nc    *nats.Conn
	js    jetstream.JetStream
	// stateJS publishes the replicated session state (sessionstate.go)
	stateJS jetstream.JetStream
	routes  jetstream.KeyValue
	retKV   jetstream.KeyValue
	max     int    // NATS max payload
	prefix  string // subject prefix: "midge.<cluster>."
	chunk   atomic.Uint64
	subs    []*nats.Subscription
	sess    sessions    // sessions.go
	state   stateWriter // sessionstate.go
	relay   relays      // relay.go
	nums    numbering   // confirm.go: what held acks wait for
	conf    confirms    // confirm.go
	// installDelay (ns), set by tests, makes a session handed over to this
	// node wait before it is installed (a slow node).
	installDelay atomic.Int64

	imu      sync.Mutex // interest (taken under trie locks: never call the trie with it)
	interest map[string]*interest
	tokens   map[uint32]string // own token → shared filter
	token    uint32
	ops      []kvOp
	opsReady chan struct{}
	writing  bool

	rmu   sync.Mutex // remote nodes and their routes (held while calling the trie)
	peers map[string]*peer
	own   map[string]uint64 // own keys seen in the bucket → revision
	// ownFilter: own keys seen in the bucket → filter (routes.go: reannounce)
	ownFilter map[string]string
	slots     []bool
	started   bool
	applied   uint64    // the routes bucket's last revision applied here
	syncs     []syncAsk // peers waiting until applied reaches a revision

	retMu   sync.Mutex
	retSeq  uint64
	retLast map[string]uint64 // topic → last local change's number

	watching sync.Map // bucket → its current KeyWatcher (watch.go)

	recv     assembler
	recvPkt  codec.Packet
	recvRes  trie.Result
	isLocal  func(trie.Subscriber) bool
	stop     chan struct{}
	wg       sync.WaitGroup
	closing  atomic.Bool
	incarn   uint64
	joinedAt time.Time
	// quorum.go: the cluster's size (cluster_peers), whether this node is
	// cut off from the majority, since when
	size     int
	joined   atomic.Bool
	joinNano atomic.Int64
	minority atomic.Bool
	cutAt    time.Time // rmu
	// hadMajority: heard a majority since joining (rmu)
	hadMajority bool
	reconciling atomic.Bool // a reconcile started by the state writer runs (sessionstate.go)
	swept       time.Time   // liveness goroutine only

	// Back-pressure across nodes (holdback.go): where other nodes ask this
	// one to hold its publishers, and the senders as the receive goroutine
	// sees them (by their hold subject), cur the one being delivered.
	holdSub string
	backs   map[string]*holdback
	cur     *holdback
	fwdSub  atomic.Pointer[nats.Subscription] // this node's forwards: its backlog holds senders too
	// intake marks in bytes (intakeHigh, intakeLow unless a test says otherwise)
	intakeHi, intakeLo atomic.Int64
	intakeHolds        atomic.Int64 // holds asked for the intake's backlog
}

type interest struct {
	n     int
	token uint32
	made  time.Time
	// settled: the live peers have the route (or settleWait passed);
	// waiters are the parked SUBSCRIBEs to wake then (subscribe.go).
	settled bool
	waiters []*session.Ticket
	timer   *time.Timer
}

type kvOp struct {
	key      string
	val      []byte    // nil: delete
	retained bool      // in the retained bucket, else routes
	in       *interest // a route's put: settled once the peers have it
}

// New makes a node for b and starts listening to b's subscriptions (so
// those restored from the store before Start are announced too). It starts
// nothing on the network.
func New(b *session.Broker, cfg Config) (*Node, error) {
	if cfg.Name == "" {
		cfg.Name = "midge"
	}
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("cluster: no cluster_node_name and no host name: %w", err)
		}
		cfg.NodeName = h
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(os.Stderr, "", log.LstdFlags)
	}
	if cfg.JoinTimeout <= 0 {
		cfg.JoinTimeout = 60 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 250 * time.Millisecond
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 12 * cfg.Heartbeat
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	n := &Node{cfg: cfg, b: b, log: cfg.Logger, interest: map[string]*interest{}, tokens: map[uint32]string{},
		opsReady: make(chan struct{}, 1), peers: map[string]*peer{}, own: map[string]uint64{}, ownFilter: map[string]string{},
		retLast: map[string]uint64{}, stop: make(chan struct{}), prefix: "midge." + cfg.Name + ".",
		incarn: binary.BigEndian.Uint64(seed[:])}
	n.isLocal = func(s trie.Subscriber) bool { _, remote := s.(session.Remote); return !remote }
	n.relay.local = &localRelay{n: n, slot: n.takeSlot(), subs: map[string]int{}} // relay.go; a slot for good
	n.holdSub = n.holdSubject()
	n.backs = map[string]*holdback{}
	n.conf.waiting, n.conf.ready = map[uint64]confirmWait{}, make(chan struct{}, 1)
	// Numbers above any an earlier run of this node gave: a late answer to
	// one of those cannot settle a new one.
	n.nums.low = uint64(time.Now().UnixNano())
	n.nums.last = n.nums.low
	b.SetDurableHook(n.kickConfirms) // confirm.go: the store's progress answers requests
	n.intakeHi.Store(intakeHigh)
	n.intakeLo.Store(intakeLow)
	b.Subs().SetObserver(n)
	b.AddStats(n.stats)
	return n, nil
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.NodeName }

// Start joins the cluster: it starts the embedded NATS server (or connects
// to the external one), binds the buckets, loads the routes and retained
// messages, hears which peers are alive and announces this node's filters.
// When it returns, the node is ready for its MQTT listeners.
func (n *Node) Start() error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.JoinTimeout)
	defer cancel()
	if err := n.connect(ctx); err != nil {
		return err
	}
	if err := n.awaitMeta(ctx); err != nil {
		return err
	}
	replicas := min(n.clusterSize(), 3)
	var err error
	// Routes are soft state, in memory: each node rewrites its own at start.
	if n.routes, err = n.bucket(ctx, "routes", replicas, 0, jetstream.MemoryStorage); err != nil {
		return err
	}
	if n.retKV, err = n.bucket(ctx, "retained", replicas, int32(n.max), jetstream.FileStorage); err != nil {
		return err
	}
	if err := n.listen(); err != nil {
		return err
	}
	if err := n.startSessions(ctx, replicas); err != nil {
		return err
	}
	// Heartbeats start before the routes load: a node that is joining
	// counts as up for the others, so that a SUBACK on another node waits
	// until this one too has that route (it answers once it has loaded it).
	n.wg.Add(1)
	go n.liveness()
	if err := n.loadRoutes(ctx); err != nil {
		return err
	}
	if err := n.loadRetained(ctx); err != nil {
		return err
	}
	n.awaitPeers(ctx)
	n.b.SetCluster(n)
	if n.ns != nil { // with an external NATS the midge nodes are not counted
		n.size = n.clusterSize()
	}
	n.joinNano.Store(time.Now().UnixNano())
	n.joined.Store(true)
	n.startWriter()
	n.joinedAt = time.Now()
	n.log.Printf("cluster %s: node %s joined (%d peers up, %d remote routes, %d retained messages, replicas %d)",
		n.cfg.Name, n.cfg.NodeName, n.Stats.PeersUp.Load(), n.Stats.Routes.Load(),
		n.b.Stats.RetainedMessages.Load(), replicas)
	return nil
}

// connect starts the embedded server or dials the external NATS.
func (n *Node) connect(ctx context.Context) error {
	opts := []nats.Option{nats.Name("midge " + n.cfg.NodeName), nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		// A slow consumer or a lost connection loses forwards: said in the log.
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = " on " + s.Subject
			}
			n.log.Printf("cluster %s: NATS%s: %v", n.cfg.Name, subj, err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil && !n.closing.Load() {
				n.log.Printf("cluster %s: disconnected from NATS: %v", n.cfg.Name, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			n.log.Printf("cluster %s: reconnected to NATS at %s", n.cfg.Name, nc.ConnectedUrlRedacted())
		})}
	var err error
	if n.cfg.NATSURL != "" {
		n.nc, err = nats.Connect(n.cfg.NATSURL, opts...)
	} else {
		if n.ns, err = n.embedded(ctx); err != nil {
			return err
		}
		// Over its loopback client port rather than in process: the
		// in-process connection is a net.Pipe, unbuffered, so every flush
		// of forwards would wait for the server to read it.
		n.nc, err = nats.Connect(n.ns.ClientURL(), opts...)
	}
	if err != nil {
		return fmt.Errorf("cluster: connecting to NATS: %w", err)
	}
	n.max = int(n.nc.MaxPayload())
	if n.js, err = jetstream.New(n.nc); err != nil {
		return err
	}
	// The state writer's own context: its asynchronous publishes give up
	// after a bound (sessionstate.go retries them), so that an answer lost
	// in a partition leaves nothing pending for ever.
	n.stateJS, err = jetstream.New(n.nc, jetstream.WithPublishAsyncTimeout(stateAckTimeout),
		jetstream.WithPublishAsyncMaxPending(stateMaxInflight))
	return err
}

// clusterSize is how many servers the cluster is known to have.
func (n *Node) clusterSize() int {
	if n.cfg.NATSURL != "" {
		return max(1, len(n.nc.Servers()))
	}
	seen := map[string]bool{}
	for _, p := range n.cfg.Peers {
		seen[p] = true
	}
	if a := n.ns.ClusterAddr(); a != nil {
		seen[a.String()] = true // the node itself, its port 0 resolved
	}
	return len(seen)
}

// listen subscribes to this node's forwards, to heartbeats and goodbyes,
// and to the peers' questions whether it has their new routes.
func (n *Node) listen() error {
	s1, err := n.nc.Subscribe(n.prefix+"n."+n.cfg.NodeName, n.receive)
	if err != nil {
		return err
	}
	n.fwdSub.Store(s1)
	s2, err := n.nc.Subscribe(n.prefix+"hb.*", n.heard)
	if err != nil {
		return err
	}
	s3, err := n.nc.Subscribe(n.prefix+"sync."+n.cfg.NodeName, n.syncAsked)
	if err != nil {
		return err
	}
	s4, err := n.nc.Subscribe(n.holdSubject(), n.holdAsked)
	if err != nil {
		return err
	}
	s5, err := n.nc.Subscribe(n.confirmSubject(n.holdSubject()), n.confirmAnswered)
	if err != nil {
		return err
	}
	for _, s := range []*nats.Subscription{s1, s2} {
		_ = s.SetPendingLimits(-1, 256<<20)
	}
	n.subs = append(n.subs, s1, s2, s3, s4, s5)
	n.wg.Add(1)
	go n.confirmLoop()
	return n.nc.Flush()
}

// receive handles one NATS message of forwards for this node. It runs on the
// subscription's goroutine, one message at a time.
func (n *Node) receive(msg *nats.Msg) {
	data := msg.Data
	n.Stats.ReceivedBytes.Add(int64(len(data)))
	if len(data) == 0 {
		return
	}
	var body []byte
	each := eachRecord
	switch data[0] {
	case kindBatchV1:
		each = eachRecordV1
		fallthrough
	case kindBatch:
		body = data[1:]
	case kindChunkV1:
		each = eachRecordV1
		fallthrough
	case kindChunk:
		b, done, err := n.recv.add(data)
		if err != nil {
			n.log.Printf("cluster %s: dropped a forwarded chunk: %v", n.cfg.Name, err)
		}
		if !done {
			return
		}
		body = b
	case kindCut:
		n.cutOver(string(data[1:])) // relay.go
		return
	case kindConfirm:
		n.confirmAsked(n.holdbackOf(msg.Reply), data) // confirm.go
		return
	default:
		n.log.Printf("cluster %s: dropped a forwarded message of unknown kind %q", n.cfg.Name, data[0])
		return
	}
	n.cur = n.holdbackOf(msg.Reply)
	if n.cur.open == 0 { // the first replicated write its next confirmation covers
		n.cur.open = n.state.ordQueued.Load() + 1
	}
	err := each(body, &n.recvPkt, n.deliver)
	if err != nil {
		n.log.Printf("cluster %s: %v", n.cfg.Name, err)
	}
	if n.intakeOver(n.intakeHi.Load()) && n.holdSender(n.cur) {
		n.intakeHolds.Add(1) // this node cannot take its forwards as fast as they come
	}
}

// deliver routes one forwarded message to this node's subscribers.
func (n *Node) deliver(token uint32, fid uint64, client, shared []byte, p *codec.Packet) {
	n.Stats.ReceivedMsgs.Add(1)
	if n.relay.active.Load() > 0 || token == relayToken {
		n.deliverMoving(token, fid, client, shared, p) // relay.go: a session moves
		return
	}
	n.deliverDirect(token, fid, p)
}

// deliverDirect routes a forwarded message to this node's subscribers: its
// ordinary ones (token 0), or the pick among its members of a shared
// subscription. It returns the number of deliveries.
func (n *Node) deliverDirect(token uint32, fid uint64, p *codec.Packet) int {
	shared := ""
	if token != 0 {
		n.imu.Lock()
		shared = n.tokens[token]
		n.imu.Unlock()
		if shared == "" {
			return 0 // its group left this node meanwhile
		}
	}
	k, slow := n.b.RouteForwardedHeld(p, fid, shared, &n.recvRes, n.isLocal, n.cur.hb)
	if slow {
		n.holdSender(n.cur)
	}
	return k
}

// send publishes one batch (or its chunks) on a node's subject.
func (n *Node) send(subject string, b []byte) {
	if len(b) <= n.max {
		n.Stats.ForwardedBytes.Add(int64(len(b)))
		_ = n.nc.PublishRequest(subject, n.holdSub, b) // the reply subject: where to ask for a hold
		return
	}
	id := n.incarn ^ n.chunk.Add(1)
	buf := make([]byte, 0, n.max)
	chunks(b, id, n.max, buf, func(c []byte) {
		n.Stats.ForwardedBytes.Add(int64(len(c)))
		_ = n.nc.PublishRequest(subject, n.holdSub, c)
	})
}

// Close leaves the cluster: the peers are told (they drop this node's
// routes at once), its route keys are deleted, NATS is stopped.
func (n *Node) Close() error {
	if !n.closing.CompareAndSwap(false, true) {
		return nil
	}
	if n.nc == nil {
		return nil
	}
	n.flushState() // sessionstate.go: what the stopped clients left
	close(n.stop)
	n.wg.Wait()
	_ = n.nc.Publish(n.prefix+"hb."+n.cfg.NodeName, []byte("bye"))
	_ = n.nc.FlushTimeout(time.Second)
	n.purgeOwn()
	for _, s := range n.subs {
		_ = s.Unsubscribe()
	}
	// Not Drain: with NATS unreachable it would hold the shutdown 30 s.
	_ = n.nc.FlushTimeout(time.Second)
	n.nc.Close()
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
	n.log.Printf("cluster %s: node %s left", n.cfg.Name, n.cfg.NodeName)
	return nil
}

var errClosed = errors.New("cluster: closed")

// stats are the node's values for $SYS/broker/cluster/... and /metrics.
func (n *Node) stats() []session.Stat {
	s := &n.Stats
	return []session.Stat{
		{Name: "cluster/node", Text: n.cfg.NodeName},
		{Name: "cluster/peers/up", Help: "Other cluster nodes heard from.", Value: s.PeersUp.Load()},
		{Name: "cluster/minority", Help: "1 while this node hears fewer than half of the cluster's other nodes (cut off: new CONNECTs refused).", Value: s.Minority.Load()},
		{Name: "cluster/routes/rewritten", Help: "Own routes written again after other nodes deleted them (this node was taken for dead).", Value: s.RoutesRewritten.Load(), Counter: true},
		{Name: "cluster/routes", Help: "Remote (node, filter) routes in the local trie.", Value: s.Routes.Load()},
		{Name: "cluster/messages/forwarded", Help: "Messages forwarded to other nodes (one per node).", Value: s.ForwardedMsgs.Load(), Counter: true},
		{Name: "cluster/bytes/forwarded", Help: "Bytes of the NATS messages forwarded to other nodes.", Value: s.ForwardedBytes.Load(), Counter: true},
		{Name: "cluster/messages/received", Help: "Messages received from other nodes.", Value: s.ReceivedMsgs.Load(), Counter: true},
		{Name: "cluster/bytes/received", Help: "Bytes of the NATS messages received from other nodes.", Value: s.ReceivedBytes.Load(), Counter: true},
		{Name: "cluster/holds/received", Help: "Times another node asked this one to hold its publishers back.", Value: s.HoldsReceived.Load(), Counter: true},
		{Name: "cluster/messages/relayed", Help: "Messages passed on to the node a session moved to during its takeover.", Value: s.RelayedMsgs.Load(), Counter: true},
		{Name: "cluster/messages/relay-dropped", Help: "Messages not passed on to the node a session moved to: more than the relay keeps (16 MiB, max_queued_bytes, max_queued_messages) waited for it to install the session.", Value: s.RelayDropped.Load(), Counter: true},
		{Name: "cluster/messages/duplicates-dropped", Help: "Second copies of a message not delivered to a session taken over from another node (it came both relayed and directly).", Value: n.b.Stats.DuplicatesDropped.Load(), Counter: true},
		{Name: "cluster/sessions/uncut-handovers", Help: "Sessions handed over without waiting for the forwards received before (intake behind): a message may come twice.", Value: n.relay.cuts.Load(), Counter: true},
		{Name: "cluster/watch/restarts", Help: "Watches of the cluster's buckets made again after they ended or stalled.", Value: s.WatchRestarts.Load(), Counter: true},
		{Name: "cluster/retained/replicated", Help: "Retained changes applied from the cluster's bucket.", Value: s.RetainedReplicas.Load(), Counter: true},
	}
}
