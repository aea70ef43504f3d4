package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/store"
)

// testNode is one midge node of an in-process cluster: a broker, its
// cluster membership and its MQTT listener, all on 127.0.0.1.
type testNode struct {
	name  string
	route string // its NATS route address
	b     *session.Broker
	node  *Node
	srv   *loop.Server
	addr  string
	logs  *syncBuffer
	store string
	once  sync.Once
	opts  func(*session.Options) // nil: the harness's defaults
	peers []string               // its cluster_peers (startClusterLinked: through proxies)
	nats  func(*server.Options)
	// persist: a local store in db (persistence true, persistence_sync
	// always: the cluster's QuorumAcks on), opened at each start.
	persist bool
	db      string
	dbh     *store.DB
	cfg     func(*Config) // changes its cluster settings (nil: none)
}

// dumpLogs: MIDGE_TEST_LOGS=1 shows the nodes' logs of passing tests too.
var dumpLogs bool

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePorts returns n loopback ports the kernel picked (listened on :0,
// then closed so that the nodes' NATS servers can take them: each node must
// know every route address before it starts).
func freePorts(t testing.TB, n int) []string {
	var out []string
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// startCluster starts n nodes at once (JetStream needs a quorum to form)
// and stops them when the test ends.
func startCluster(t testing.TB, n int) []*testNode {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith is startCluster with the brokers' options changed by opts.
func startClusterWith(t testing.TB, n int, opts func(*session.Options)) []*testNode {
	t.Helper()
	return startClusterWithEach(t, n, opts, nil)
}

// startClusterWithEach is startClusterWith with each node changed by each
// (nil: none) before it starts.
func startClusterWithEach(t testing.TB, n int, opts func(*session.Options), each func(*testNode)) []*testNode {
	t.Helper()
	for attempt := 1; ; attempt++ {
		routes := freePorts(t, n)
		nodes := make([]*testNode, n)
		for i := range nodes {
			nodes[i] = &testNode{name: fmt.Sprintf("n%d", i+1), route: routes[i], store: t.TempDir(), opts: opts, peers: routes}
			if each != nil {
				each(nodes[i])
			}
		}
		if nodes, ok := tryLaunch(t, nodes, attempt < 3); ok {
			return nodes
		}
	}
}

// startClusterLinked starts n nodes whose routes to each other pass
// through proxies (links[i][j]: node i's connections to node j), so that a
// test can cut a node off while every process stays up.
func startClusterLinked(t testing.TB, n int, opts func(*session.Options)) ([]*testNode, links) {
	t.Helper()
	return startClusterLinkedWith(t, n, opts, nil)
}

// startClusterLinkedWith is startClusterLinked with each node changed by
// each (nil: none) before it starts.
func startClusterLinkedWith(t testing.TB, n int, opts func(*session.Options), each func(*testNode)) ([]*testNode, links) {
	t.Helper()
	// The proxies listen first: a port freePorts hands out is free until a
	// node takes it, and must not go to a proxy meanwhile.
	l := make(links, n)
	for i := range l {
		l[i] = make([]*proxy, n)
		for j := range n {
			if j != i {
				l[i][j] = newProxy(t)
			}
		}
	}
	for attempt := 1; ; attempt++ {
		if nodes, ok := tryLaunch(t, linkedNodes(t, l, opts, each), attempt < 3); ok {
			return nodes, l
		}
	}
}

// linkedNodes makes the nodes of startClusterLinkedWith on fresh route
// ports, their links' proxies pointed at them.
func linkedNodes(t testing.TB, l links, opts func(*session.Options), each func(*testNode)) []*testNode {
	n := len(l)
	routes := freePorts(t, n)
	nodes := make([]*testNode, n)
	for i := range nodes {
		peers := []string{routes[i]}
		for j := range n {
			if j != i {
				l[i][j].setTarget(routes[j]) // before any node dials it
				peers = append(peers, l[i][j].addr())
			}
		}
		nodes[i] = &testNode{name: fmt.Sprintf("n%d", i+1), route: routes[i], store: t.TempDir(), opts: opts, peers: peers,
			// A node learns its peers' real route addresses from the others
			// (gossip) and would connect there, around the proxies: what it
			// learns is a closed port.
			nats: func(o *server.Options) { o.Cluster.Advertise = closedPort(t) }}
		if each != nil {
			each(nodes[i])
		}
	}
	return nodes
}

// closedPort is a loopback address nothing listens on.
func closedPort(t testing.TB) string { return freePorts(t, 1)[0] }

// tryLaunch starts the nodes. A route port that freePorts handed out can be
// taken by another process before its node listens on it (an outgoing
// connection's port: the packages' tests run side by side); with retry,
// the nodes are then stopped and false returned, for fresh ports.
func tryLaunch(t testing.TB, nodes []*testNode, retry bool) ([]*testNode, bool) {
	t.Helper()
	n := len(nodes)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, tn := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = tn.start(tn.peers) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && retry && strings.Contains(err.Error(), "NATS server not ready") {
			t.Logf("node %s: %v: starting the cluster again on other ports", nodes[i].name, err)
			for _, tn := range nodes {
				tn.stop(t)
			}
			return nil, false
		}
	}
	for _, tn := range nodes {
		t.Cleanup(func() { tn.stop(t) })
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %s: %v\n%s", nodes[i].name, err, nodes[i].logs)
		}
	}
	// Every node hears every other before a test goes on: a node never
	// heard from is nobody's peer, and a cut made before the heartbeats
	// met would never be seen as a node's death (a loaded machine).
	waitFor(t, 30*time.Second, "every node to hear the others", func() bool {
		for _, tn := range nodes {
			if tn.node.Stats.PeersUp.Load() != int64(n-1) {
				return false
			}
		}
		return true
	})
	return nodes, true
}

func (tn *testNode) start(peers []string) error {
	tn.logs = &syncBuffer{}
	logger := log.New(tn.logs, tn.name+" ", log.Lmicroseconds)
	o := session.DefaultOptions()
	o.Logger = logger
	o.MaxQueuedMessages = 0
	if tn.opts != nil {
		tn.opts(&o)
	}
	tn.b = session.NewBroker(o)
	cfg := Config{Name: "test", NodeName: tn.name, Listen: tn.route, Peers: peers,
		StoreDir: tn.store, Logger: logger, JoinTimeout: 90 * time.Second, natsOpts: tn.nats, QuorumAcks: tn.persist}
	if tn.cfg != nil {
		tn.cfg(&cfg)
	}
	var err error
	tn.node, err = New(tn.b, cfg)
	if err != nil {
		return err
	}
	if tn.persist { // as main: the store is loaded after the node is made, before it starts
		if tn.dbh, err = store.Open(tn.db, store.Options{Sync: store.SyncAlways, OnDurable: tn.b.Durable}); err != nil {
			return err
		}
		if _, err := tn.b.AttachStore(tn.dbh); err != nil {
			return err
		}
	}
	if err := tn.node.Start(); err != nil {
		return err
	}
	tn.srv = loop.New(tn.b, loop.Config{Listeners: []string{"127.0.0.1:0"}, Loops: 2, Logger: logger})
	if err := tn.srv.Start(); err != nil {
		return err
	}
	tn.addr = tn.srv.Addrs()[0].String()
	tn.once = sync.Once{}
	return nil
}

// stop shuts the node down as SIGTERM would: listeners, then the cluster.
func (tn *testNode) stop(t testing.TB) {
	tn.once.Do(func() {
		if tn.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = tn.srv.Shutdown(ctx)
			cancel()
		}
		if tn.node != nil {
			_ = tn.node.Close()
		}
		if tn.dbh != nil {
			_ = tn.dbh.Close()
			tn.dbh = nil
		}
		if t.Failed() || dumpLogs {
			t.Logf("log of %s:\n%s", tn.name, tn.logs)
		}
	})
}

// inbox collects the messages a client receives.
type inbox struct {
	mu   sync.Mutex
	msgs []got
	sig  chan struct{}
}

type got struct {
	topic, payload string
	qos            byte
	retain         bool
	props          codec.Properties
}

func newInbox() *inbox { return &inbox{sig: make(chan struct{}, 1)} }

func (in *inbox) add(m *client.Message) {
	g := got{topic: string(m.Topic), payload: string(m.Payload), qos: m.QoS, retain: m.Retain}
	if m.Props != nil {
		g.props = copyProps(m.Props)
	}
	in.mu.Lock()
	in.msgs = append(in.msgs, g)
	in.mu.Unlock()
	select {
	case in.sig <- struct{}{}:
	default:
	}
}

func copyProps(p *codec.Properties) codec.Properties {
	c := *p
	c.ContentType = bytes.Clone(p.ContentType)
	c.ResponseTopic = bytes.Clone(p.ResponseTopic)
	c.CorrelationData = bytes.Clone(p.CorrelationData)
	c.SubscriptionIDs = append([]uint32(nil), p.SubscriptionIDs...)
	c.User = nil
	for _, u := range p.User {
		c.User = append(c.User, codec.UserProperty{Key: bytes.Clone(u.Key), Value: bytes.Clone(u.Value)})
	}
	return c
}

// wait waits until the inbox holds n messages, or fails after d.
func (in *inbox) wait(t testing.TB, n int, d time.Duration) []got {
	t.Helper()
	deadline := time.After(d)
	for {
		in.mu.Lock()
		if len(in.msgs) >= n {
			out := append([]got(nil), in.msgs...)
			in.mu.Unlock()
			return out
		}
		have := len(in.msgs)
		in.mu.Unlock()
		select {
		case <-in.sig:
		case <-deadline:
			t.Fatalf("got %d of %d messages in %v", have, n, d)
		}
	}
}

func (in *inbox) snapshot() []got {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]got(nil), in.msgs...)
}

// connect opens a client to a node; its messages go to the returned inbox.
func connect(t testing.TB, addr, id string, version byte) (*client.Client, *inbox) {
	t.Helper()
	return connectWith(t, client.Options{Addr: addr, ClientID: id, Version: version, CleanStart: true, MaxInflight: 100})
}

// connectWith opens a client with o; its messages go to the returned inbox.
func connectWith(t testing.TB, o client.Options) (*client.Client, *inbox) {
	t.Helper()
	in := newInbox()
	c := client.New(o)
	c.OnMessage = in.add
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s to %s: %v", o.ClientID, o.Addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, in
}

func subscribe(t testing.TB, c *client.Client, props *codec.Properties, subs ...codec.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	codes, err := c.Subscribe(ctx, props, subs...)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for _, code := range codes {
		if code >= 0x80 {
			t.Fatalf("subscribe refused: %#x", code)
		}
	}
}

func publish(t testing.TB, c *client.Client, m *client.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Publish(ctx, m); err != nil {
		t.Fatalf("publish %q: %v", m.Topic, err)
	}
}

// waitRoutes waits until every node holds want remote routes in its trie.
func waitRoutes(t testing.TB, nodes []*testNode, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, tn := range nodes {
		for tn.node.Stats.Routes.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("node %s has %d remote routes, want %d: %v", tn.name, tn.node.Stats.Routes.Load(), want, tn.node.routeList())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// routeList lists the remote routes a node knows, for failure messages.
func (n *Node) routeList() []string {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	var out []string
	for name, p := range n.peers {
		for _, r := range p.routes {
			out = append(out, fmt.Sprintf("%s:%s(alive %v)", name, r.filter, p.alive))
		}
	}
	return out
}

// hasRoute reports whether node holds a live route of peer for filter.
func (n *Node) hasRoute(peer, filter string) bool {
	n.rmu.Lock()
	defer n.rmu.Unlock()
	p := n.peers[peer]
	if p == nil || !p.alive {
		return false
	}
	for _, r := range p.routes {
		if r.filter == filter {
			return true
		}
	}
	return false
}

// dupCount counts a subscriber's copies of each payload: how many came as
// new (DUP 0) and how many as resent (DUP 1). A QoS 1 message sent to the
// old connection and not yet acknowledged when the takeover cut it is
// resent on the new one with DUP 1 [MQTT-4.4.0-1]: the protocol's own
// duplicate. A second copy sent as new is the broker's.
type dupCount struct {
	mu     sync.Mutex
	copies map[string][2]int // payload → copies as new, resent
}

func (d *dupCount) add(m *client.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.copies == nil {
		d.copies = map[string][2]int{}
	}
	c := d.copies[string(m.Payload)]
	if m.Dup {
		c[1]++
	} else {
		c[0]++
	}
	d.copies[string(m.Payload)] = c
}

// duplicates returns the copies beyond each payload's first: sent as new
// (a second DUP 0 copy), and resent (DUP 1) after a copy had come.
func (d *dupCount) duplicates() (fresh, resent int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.copies {
		fresh += max(c[0]-1, 0)
		if c[0] > 0 {
			resent += c[1]
		} else {
			resent += max(c[1]-1, 0)
		}
	}
	return fresh, resent
}
