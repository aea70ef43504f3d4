package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// connectSession opens a v5 client with a session expiry (clean false
// unless clean) and returns it with its inbox; the CONNACK is in c.Connack().
func connectSession(t testing.TB, addr, id string, clean bool, expiry uint32) (*client.Client, *inbox) {
	t.Helper()
	o := client.Options{Addr: addr, ClientID: id, Version: codec.Version5, CleanStart: clean, MaxInflight: 100}
	o.Props.SessionExpiry = expiry
	o.Props.Set(codec.PropSessionExpiry)
	return connectWith(t, o)
}

// waitClosed waits until c's connection ends and returns why.
func waitClosed(t testing.TB, c *client.Client, d time.Duration) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(d):
		t.Fatalf("connection not closed within %v", d)
		return nil
	}
}

// TestClusterSessions runs one three-node cluster through the session
// rules across nodes: takeover keeps subscriptions and queue, clean start
// gives a fresh session, simultaneous CONNECTs leave one connection.
func TestClusterSessions(t *testing.T) {
	nodes := startCluster(t, 3)
	t.Run("Takeover", func(t *testing.T) { testTakeover(t, nodes) })
	t.Run("CleanStart", func(t *testing.T) { testTakeoverCleanStart(t, nodes) })
	t.Run("Race", func(t *testing.T) { testConnectRace(t, nodes) })
	t.Run("TakeoverTime", func(t *testing.T) { testTakeoverTime(t, nodes) })
	t.Run("WillDelay", func(t *testing.T) { testWillDelayAcrossNodes(t, nodes) })
	t.Run("Expiry", func(t *testing.T) { testExpiryAcrossNodes(t, nodes) })
	t.Run("TakeoverInFlight", func(t *testing.T) { testTakeoverInFlight(t, nodes, "mv", false, 2) })
	t.Run("TakeoverInFlightShared", func(t *testing.T) { testTakeoverInFlight(t, nodes, "shmv", true, 2) })
	t.Run("TakeoverInFlightLocal", func(t *testing.T) { testTakeoverInFlight(t, nodes, "lcmv", false, 0) })
	t.Run("RelayBound", func(t *testing.T) { testRelayBound(t, nodes) })
	t.Run("TakeoverOrdinaryAndShared", func(t *testing.T) { testTakeoverOrdinaryAndShared(t, nodes) })
}

// testTakeoverOrdinaryAndShared: a session that subscribes to a topic both
// directly and through a shared subscription takes each message twice,
// once through each (MQTT 5 §4.8.2: the shared subscription is one of the
// session's subscriptions like another), also in the dedup window after a
// takeover across nodes: the publishing node's batch carries both copies
// with one forward id (wire.go), and the second is not a repeat.
func testTakeoverOrdinaryAndShared(t *testing.T, nodes []*testNode) {
	const id = "both-mover"
	c, _ := connectSession(t, nodes[0].addr, id, true, 600)
	subscribe(t, c, nil, codec.Subscription{Filter: []byte("both/#"), QoS: 1},
		codec.Subscription{Filter: []byte("$share/g/both/#"), QoS: 1})
	_, in := connectSession(t, nodes[1].addr, id, false, 600) // taken over from n1, live
	waitRoute(t, nodes[2], "n2", "both/#")
	waitRoute(t, nodes[2], "n2", "$share/g/both/#")
	pub, _ := connect(t, nodes[2].addr, "both-pub", codec.Version5)
	const sent = 5
	for i := range sent {
		publish(t, pub, &client.Message{Topic: []byte("both/x"), Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	in.wait(t, 2*sent, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // a third copy would come meanwhile
	copies := map[string]int{}
	for _, g := range in.snapshot() {
		copies[g.payload]++
	}
	for i := range sent {
		if k := copies[strconv.Itoa(i)]; k != 2 {
			t.Fatalf("message %d came %d times, want 2 (ordinary and shared): %v", i, k, copies)
		}
	}
}

// testTakeoverInFlight: a persistent QoS 1 subscriber moves between n1 and
// n2 six times while a publisher on n3 publishes without pause: every
// message n3 acknowledged is delivered, those forwarded to the old node
// while the session moved included (relay.go), and none twice as new.
// shared: the subscriber is the only member of a shared subscription
// ($share/g/<topic>/#), whose picks n3 makes for the node it is on.
// pubOn: the publisher's node (0: n1, the old node of every other move,
// the new one of the others).
func testTakeoverInFlight(t *testing.T, nodes []*testNode, topic string, shared bool, pubOn int) {
	mv := &mover{t: t, id: topic + "-mover"}
	open := mv.open
	c := open(nodes[0].addr, true)
	filter := topic + "/#"
	if shared {
		filter = "$share/g/" + filter
	}
	subscribe(t, c, nil, codec.Subscription{Filter: []byte(filter), QoS: 1})
	if pubOn != 0 {
		waitRoute(t, nodes[pubOn], "n1", filter)
	}
	relayed := func() (r int64) {
		for _, tn := range nodes {
			r += tn.node.Stats.RelayedMsgs.Load()
		}
		return r
	}
	cut := func() (r int64) {
		for _, tn := range nodes {
			r += tn.b.Stats.DuplicatesDropped.Load()
		}
		return r
	}
	before, cutBefore := relayed(), cut()

	pub, _ := connect(t, nodes[pubOn].addr, topic+"-pub", codec.Version5)
	var acked []int
	var mu sync.Mutex
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for seq := 0; ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := pub.Publish(ctx, &client.Message{Topic: []byte(topic + "/x"), Payload: []byte(strconv.Itoa(seq)), QoS: 1})
			cancel()
			if err != nil {
				return
			}
			mu.Lock()
			acked = append(acked, seq)
			mu.Unlock()
		}
	}()
	for i := range 6 {
		time.Sleep(200 * time.Millisecond)
		open(nodes[(i+1)%2].addr, false)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	mu.Lock()
	want := append([]int(nil), acked...)
	mu.Unlock()
	missing := want
	for deadline := time.Now().Add(20 * time.Second); len(missing) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		var left []int
		for _, s := range missing {
			if _, ok := mv.got.Load(strconv.Itoa(s)); !ok {
				left = append(left, s)
			}
		}
		missing = left
	}
	fresh, resent := mv.copies.duplicates()
	t.Logf("%d acknowledged, %d received, %d relayed by the old nodes, %d second copies cut by the new ones; duplicates: %d sent as new, %d resent (DUP 1)",
		len(want), mv.received.Load(), relayed()-before, cut()-cutBefore, fresh, resent)
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged messages lost, first %v", len(missing), missing[:min(len(missing), 20)])
	}
	if fresh > 0 {
		t.Fatalf("%d messages delivered twice as new (DUP 0): each is sent once across a takeover", fresh)
	}
}

// willClient connects a v5 client with a delayed will on wills/<id>.
func willClient(t testing.TB, addr, id string, delay, expiry uint32) *client.Client {
	t.Helper()
	o := client.Options{Addr: addr, ClientID: id, Version: codec.Version5, CleanStart: true,
		Will: &client.Message{Topic: []byte("wills/" + id), Payload: []byte("gone"), QoS: 1}}
	o.Will.Props = &codec.Properties{}
	o.Will.Props.WillDelay = delay
	o.Will.Props.Set(codec.PropWillDelay)
	o.Props.SessionExpiry = expiry
	o.Props.Set(codec.PropSessionExpiry)
	c := client.New(o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testWillDelayAcrossNodes: a client whose connection drops on n1 with a
// will delay of 2 s and comes back on n2 within it: the will is never
// sent [MQTT-3.1.3-9]; one that does not come back: its will arrives after
// the delay, on a third node.
func testWillDelayAcrossNodes(t *testing.T, nodes []*testNode) {
	watcher, wills := connect(t, nodes[2].addr, "wdwatch", codec.Version5)
	subscribe(t, watcher, nil, codec.Subscription{Filter: []byte("wills/#"), QoS: 1})
	waitRoute(t, nodes[0], "n3", "wills/#")

	back := willClient(t, nodes[0].addr, "wdback", 2, 60)
	gone := willClient(t, nodes[0].addr, "wdgone", 2, 60)
	dropped := time.Now()
	_ = back.Close() // no DISCONNECT: the will is due after its delay
	_ = gone.Close()
	time.Sleep(300 * time.Millisecond)
	c, _ := connectSession(t, nodes[1].addr, "wdback", false, 60)
	if !c.Connack().SessionPresent {
		t.Fatal("wdback resumed on n2: session present 0")
	}
	got := wills.wait(t, 1, 10*time.Second)
	after := time.Since(dropped)
	if got[0].topic != "wills/wdgone" || after < 2*time.Second {
		t.Fatalf("will %q after %v, want wills/wdgone after 2 s", got[0].topic, after)
	}
	time.Sleep(2500*time.Millisecond - time.Since(dropped) + time.Second)
	if got := wills.snapshot(); len(got) != 1 {
		t.Fatalf("wills: %+v, want wdgone's only", got)
	}
	_ = c.Disconnect(0, nil)
}

// testExpiryAcrossNodes: a session that expired on n1 (expiry 1 s) is not
// resumed on n2 (session present 0, no subscription); one that has not is.
func testExpiryAcrossNodes(t *testing.T, nodes []*testNode) {
	short, _ := connectSession(t, nodes[0].addr, "exshort", true, 1)
	subscribe(t, short, nil, codec.Subscription{Filter: []byte("ex/#"), QoS: 1})
	long, _ := connectSession(t, nodes[0].addr, "exlong", true, 60)
	subscribe(t, long, nil, codec.Subscription{Filter: []byte("ex/#"), QoS: 1})
	_ = short.Disconnect(0, nil)
	_ = long.Disconnect(0, nil)
	deadline := time.Now().Add(10 * time.Second)
	for hasSession(nodes[0], "exshort") {
		if time.Now().After(deadline) {
			t.Fatal("exshort did not expire on n1")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, _ := connectSession(t, nodes[1].addr, "exshort", false, 60)
	if c.Connack().SessionPresent {
		t.Fatal("an expired session resumed on n2")
	}
	if f, _ := nodes[1].b.SubscriptionsOf("exshort"); len(f) != 0 {
		t.Fatalf("expired session's subscriptions on n2: %v", f)
	}
	c2, _ := connectSession(t, nodes[1].addr, "exlong", false, 60)
	if !c2.Connack().SessionPresent {
		t.Fatal("a live session not resumed on n2")
	}
	_ = c.Disconnect(0, nil)
	_ = c2.Disconnect(0, nil)
}

// testTakeoverTime measures a takeover across nodes: CONNECT on one node
// until its CONNACK, the client connected to another node until then, with
// a subscription (logged, no assertion on time).
func testTakeoverTime(t *testing.T, nodes []*testNode) {
	const rounds = 40
	const id = "timed"
	c, _ := connectSession(t, nodes[0].addr, id, true, 300)
	subscribe(t, c, nil, codec.Subscription{Filter: []byte("tt/#"), QoS: 1})
	var times []time.Duration
	for i := range rounds {
		at := nodes[(i+1)%2].addr
		start := time.Now()
		next, _ := connectSession(t, at, id, false, 300)
		times = append(times, time.Since(start))
		if !next.Connack().SessionPresent {
			t.Fatalf("round %d: session present 0", i)
		}
		c = next
	}
	_ = c.Disconnect(0, nil)
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("takeover across nodes (CONNECT to CONNACK, %d rounds): p50 %v, p99 %v, max %v", rounds,
		times[len(times)/2].Round(10*time.Microsecond), times[len(times)*99/100].Round(10*time.Microsecond),
		times[len(times)-1].Round(10*time.Microsecond))
}

// testTakeover: a session connected on n1 is taken over by a CONNECT on n2
// (the old connection gets DISCONNECT 0x8E [MQTT-3.1.4-3]); the session
// continues there with session present 1 [MQTT-3.2.2-3] and its
// subscription; then, offline on n2 with 200 QoS 1 messages queued, it is
// resumed on n3 with all of them, in order.
func testTakeover(t *testing.T, nodes []*testNode) {
	const id = "mover"
	c1, _ := connectSession(t, nodes[0].addr, id, true, 300)
	subscribe(t, c1, nil, codec.Subscription{Filter: []byte("tk/#"), QoS: 1})
	waitRoute(t, nodes[2], "n1", "tk/#")

	c2, in2 := connectSession(t, nodes[1].addr, id, false, 300)
	if !c2.Connack().SessionPresent {
		t.Fatal("takeover on n2: session present 0, want 1")
	}
	var de *client.DisconnectError
	if err := waitClosed(t, c1, 10*time.Second); !errors.As(err, &de) || de.Code != codec.SessionTakenOver {
		t.Fatalf("old connection on n1 ended with %v, want DISCONNECT 0x8E", err)
	}
	// The subscription moved with the session: n1 no longer holds it,
	// n2 does; a message published on n3 reaches the client on n2.
	waitRoute(t, nodes[2], "n2", "tk/#")
	pub, _ := connect(t, nodes[2].addr, "tkpub", codec.Version5)
	publish(t, pub, &client.Message{Topic: []byte("tk/a"), Payload: []byte("online"), QoS: 1})
	if got := in2.wait(t, 1, 10*time.Second); got[0].payload != "online" {
		t.Fatalf("got %q", got[0].payload)
	}

	// Offline on n2 (once "online" is acknowledged): what is published now
	// waits in its queue there.
	for q, _ := nodes[1].b.SessionQueued(id); q != 0; q, _ = nodes[1].b.SessionQueued(id) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := c2.Disconnect(0, nil); err != nil {
		t.Fatal(err)
	}
	const queued = 200
	for i := range queued {
		publish(t, pub, &client.Message{Topic: []byte("tk/q"), Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	waitQueued(t, nodes[1], id, queued)
	c3, in3 := connectSession(t, nodes[2].addr, id, false, 300)
	if !c3.Connack().SessionPresent {
		t.Fatal("resume on n3: session present 0, want 1")
	}
	got := in3.wait(t, queued, 20*time.Second)
	for i, m := range got[:queued] {
		if m.payload != strconv.Itoa(i) || m.qos != 1 {
			t.Fatalf("message %d: %q QoS %d", i, m.payload, m.qos)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(in3.snapshot()); n != queued {
		t.Fatalf("got %d messages, want %d (duplicates)", n, queued)
	}
	_ = c3.Disconnect(0, nil)
}

// testTakeoverCleanStart: a CONNECT with clean start on another node ends
// the session everywhere: session present 0, no subscription, no queue.
func testTakeoverCleanStart(t *testing.T, nodes []*testNode) {
	const id = "cleaner"
	c1, _ := connectSession(t, nodes[0].addr, id, true, 300)
	subscribe(t, c1, nil, codec.Subscription{Filter: []byte("cs/#"), QoS: 1})
	waitRoute(t, nodes[1], "n1", "cs/#")
	_ = c1.Disconnect(0, nil)
	pub, _ := connect(t, nodes[2].addr, "cspub", codec.Version5)
	publish(t, pub, &client.Message{Topic: []byte("cs/q"), Payload: []byte("queued"), QoS: 1})
	waitQueued(t, nodes[0], id, 1)

	c2, in2 := connectSession(t, nodes[1].addr, id, true, 300)
	if c2.Connack().SessionPresent {
		t.Fatal("clean start on n2: session present 1, want 0 [MQTT-3.2.2-2]")
	}
	deadline := time.Now().Add(10 * time.Second)
	for nodes[1].node.hasRoute("n1", "cs/#") {
		if time.Now().After(deadline) {
			t.Fatal("n1 still announces the ended session's subscription")
		}
		time.Sleep(10 * time.Millisecond)
	}
	publish(t, pub, &client.Message{Topic: []byte("cs/q"), Payload: []byte("after"), QoS: 1})
	time.Sleep(300 * time.Millisecond)
	if got := in2.snapshot(); len(got) != 0 {
		t.Fatalf("fresh session got %v", got)
	}
	if nodes[0].b.Sessions() != 0 && hasSession(nodes[0], id) {
		t.Fatal("n1 still holds the session")
	}
}

// testConnectRace: two CONNECTs with one client id on two nodes at once,
// many times over: afterwards exactly one connection is open.
func testConnectRace(t *testing.T, nodes []*testNode) {
	for round := range 20 {
		id := fmt.Sprintf("racer%d", round)
		var wg sync.WaitGroup
		cs := make([]*client.Client, 2)
		for i := range cs {
			o := client.Options{Addr: nodes[i].addr, ClientID: id, Version: codec.Version5, CleanStart: false}
			o.Props.SessionExpiry = 60
			o.Props.Set(codec.PropSessionExpiry)
			cs[i] = client.New(o)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				if err := cs[i].Connect(ctx); err != nil {
					t.Errorf("round %d: connect on n%d: %v", round, i+1, err)
				}
			}()
		}
		wg.Wait()
		// The loser is disconnected (0x8E) once the winner's CONNECT is
		// through; give it that long, then count.
		deadline := time.Now().Add(10 * time.Second)
		for {
			open := 0
			for _, c := range cs {
				select {
				case <-c.Done():
				default:
					open++
				}
			}
			held := 0
			for _, tn := range nodes {
				if hasSession(tn, id) {
					held++
				}
			}
			if open == 1 && held == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %d connections open, %d nodes hold the session", round, open, held)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, c := range cs {
			_ = c.Close()
		}
	}
}

// hasSession reports whether tn holds a session for id.
func hasSession(tn *testNode, id string) bool {
	_, ok := tn.b.SessionQueued(id)
	return ok
}

// waitQueued waits until tn's session id holds n queued messages.
func waitQueued(t testing.TB, tn *testNode, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		q, _ := tn.b.SessionQueued(id)
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: session %s has %d queued, want %d", tn.name, id, q, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitRoute waits until tn holds a live route of peer for filter.
func waitRoute(t testing.TB, tn *testNode, peer, filter string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !tn.node.hasRoute(peer, filter) {
		if time.Now().After(deadline) {
			t.Fatalf("%s has no route of %s for %s: %v", tn.name, peer, filter, tn.node.routeList())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill stops a node as a crash would: its NATS server goes first (no
// goodbye, nothing more written), then its listener.
func (tn *testNode) kill(t testing.TB) {
	tn.node.nc.Close() // else it reconnects to another node's server
	tn.node.ns.Shutdown()
	tn.node.ns.WaitForShutdown()
	tn.stop(t)
}

// TestClusterSessionNodeDeath: the node holding an offline persistent
// session with queued QoS 1 messages, and a connected client with a will,
// dies: the will arrives on another node once, and the session is resumed
// on another node with every queued message.
func TestClusterSessionNodeDeath(t *testing.T) {
	nodes := startCluster(t, 3)
	const id, queued = "survivor", 300
	c1, _ := connectSession(t, nodes[0].addr, id, true, 600)
	subscribe(t, c1, nil, codec.Subscription{Filter: []byte("nd/#"), QoS: 1})
	waitRoute(t, nodes[1], "n1", "nd/#")
	_ = c1.Disconnect(0, nil)

	watcher, wills := connect(t, nodes[2].addr, "watcher", codec.Version5)
	subscribe(t, watcher, nil, codec.Subscription{Filter: []byte("wills/#"), QoS: 1})
	waitRoute(t, nodes[0], "n3", "wills/#")
	o := client.Options{Addr: nodes[0].addr, ClientID: "dier", Version: codec.Version5, CleanStart: true,
		Will: &client.Message{Topic: []byte("wills/dier"), Payload: []byte("gone"), QoS: 1}}
	dier := client.New(o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := dier.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer dier.Close()

	pub, _ := connect(t, nodes[1].addr, "ndpub", codec.Version5)
	for i := range queued {
		publish(t, pub, &client.Message{Topic: []byte("nd/x"), Payload: []byte(strconv.Itoa(i)), QoS: 1})
	}
	waitQueued(t, nodes[0], id, queued)
	time.Sleep(500 * time.Millisecond) // the replicated queue is written asynchronously

	killed := time.Now()
	nodes[0].kill(t)
	if got := wills.wait(t, 1, 30*time.Second); got[0].payload != "gone" {
		t.Fatalf("will: %+v", got[0])
	}
	t.Logf("will arrived %v after the crash", time.Since(killed).Round(time.Millisecond))

	c3, in3 := connectSession(t, nodes[2].addr, id, false, 600)
	if !c3.Connack().SessionPresent {
		t.Fatal("resumed on n3: session present 0, want 1")
	}
	got := in3.wait(t, queued, 30*time.Second)
	for i, m := range got[:queued] {
		if m.payload != strconv.Itoa(i) {
			t.Fatalf("message %d: %q", i, m.payload)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(wills.snapshot()); n != 1 {
		t.Fatalf("the will arrived %d times", n)
	}
}

// mover is a persistent v5 session (expiry 600 s) that tests move between
// nodes; it notes what it receives.
type mover struct {
	t        *testing.T
	id       string
	got      sync.Map // payload → struct{}
	received atomic.Int64
	copies   dupCount
}

// open connects the mover to addr: clean, a fresh session; else it must
// resume its session there [MQTT-3.2.2-3].
func (mv *mover) open(addr string, clean bool) *client.Client {
	t := mv.t
	o := client.Options{Addr: addr, ClientID: mv.id, Version: codec.Version5, CleanStart: clean, MaxInflight: 100}
	o.Props.SessionExpiry = 600
	o.Props.Set(codec.PropSessionExpiry)
	c := client.New(o)
	c.OnMessage = func(m *client.Message) {
		mv.got.Store(string(m.Payload), struct{}{})
		mv.received.Add(1)
		mv.copies.add(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s to %s: %v", mv.id, addr, err)
	}
	if !clean && !c.Connack().SessionPresent {
		t.Fatalf("%s resumed on %s: session present 0 [MQTT-3.2.2-3]", mv.id, addr)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
