package cluster

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/sys"
)

// waitFor polls cond every 10 ms until it holds, or fails after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// refused checks that a CONNECT to addr is refused with "server
// unavailable" (v5 0x88, v3 3) within 10 s.
func refused(t testing.TB, addr, id string, v byte) time.Duration {
	t.Helper()
	c := client.New(client.Options{Addr: addr, ClientID: id, Version: v, CleanStart: true})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := c.Connect(ctx)
	took := time.Since(start)
	want := byte(codec.ServerUnavailable)
	if v != codec.Version5 {
		want = codec.ConnRefusedServerUnavailable
	}
	var ce *client.ConnackError
	if !errors.As(err, &ce) || ce.Code != want {
		t.Errorf("v%d CONNECT in a minority: %v, want CONNACK %#x", v, err, want)
	}
	if took > 10*time.Second {
		t.Errorf("v%d CONNECT refused after %v", v, took)
	}
	return took
}

// TestClusterPartition cuts one node of three off (its route links go
// silent, every process stays up), then heals the links, either letting
// the stalled connections go on (resume) or closing them so that NATS
// connects again (reconnect). While cut off, the node serves its connected
// clients, says so (log, $SYS) and refuses new CONNECTs within seconds
// (v5 0x88, v3 3); the majority goes on, and takes the cut-off node for
// dead (its client's will, its persistent session with a queue). After the
// heal, routes, the retained message set meanwhile and sessions converge
// without a restart (how long is logged), and a client id connected on
// both sides keeps one connection, the majority's (the other gets v5
// DISCONNECT 0x8E, session taken over).
func TestClusterPartition(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := "resume"
		if reset {
			name = "reconnect"
		}
		t.Run(name, func(t *testing.T) { testPartition(t, reset) })
	}
}

func testPartition(t *testing.T, reset bool) {
	nodes, l := startClusterLinked(t, 3, nil)
	maj, min := nodes[0], nodes[2]

	mSub, mIn := connect(t, min.addr, "min-sub", codec.Version5)
	subscribe(t, mSub, nil, codec.Subscription{Filter: []byte("part/#"), QoS: 1})
	mPub, _ := connect(t, min.addr, "min-pub", codec.Version311)
	MSub, MIn := connect(t, maj.addr, "maj-sub", codec.Version5)
	subscribe(t, MSub, nil, codec.Subscription{Filter: []byte("part/#"), QoS: 1})
	// A persistent session on the minority node, which connects again on
	// the majority side during the partition.
	dup1, _ := connectSession(t, min.addr, "twice", true, 600)
	subscribe(t, dup1, nil, codec.Subscription{Filter: []byte("twice/#"), QoS: 1})
	// A client with a will on the minority node.
	cw, _ := connectWith(t, client.Options{Addr: min.addr, ClientID: "cutwill", Version: codec.Version5, CleanStart: true,
		Will: &client.Message{Topic: []byte("pwill/cut"), Payload: []byte("cut off"), QoS: 1}})
	subscribe(t, MSub, nil, codec.Subscription{Filter: []byte("pwill/#"), QoS: 1})
	waitRoute(t, maj, "n3", "part/#")
	waitRoute(t, min, "n1", "part/#")
	time.Sleep(300 * time.Millisecond) // the session's snapshot is written asynchronously

	cut := time.Now()
	l.cut(2)
	dMaj := waitFor(t, 20*time.Second, "the majority sees n3 down", func() bool {
		return maj.node.Stats.PeersUp.Load() == 1 && nodes[1].node.Stats.PeersUp.Load() == 1
	})
	dMin := waitFor(t, 20*time.Second, "n3 sees itself alone", func() bool { return min.node.Stats.PeersUp.Load() == 0 })
	t.Logf("partition seen by the majority after %v, by the minority after %v", dMaj.Round(time.Millisecond), dMin.Round(time.Millisecond))

	// The minority node serves its connected clients among themselves.
	publish(t, mPub, &client.Message{Topic: []byte("part/min"), Payload: []byte("local"), QoS: 1})
	if got := mIn.wait(t, 1, 10*time.Second); got[0].payload != "local" {
		t.Fatalf("minority subscriber got %+v", got[0])
	}
	// It says so in $SYS (read by a client connected before).
	sysPub := sys.New(min.b, "test", time.Hour)
	subscribe(t, mSub, nil, codec.Subscription{Filter: []byte("$SYS/broker/cluster/+"), QoS: 0},
		codec.Subscription{Filter: []byte("$SYS/broker/cluster/peers/up"), QoS: 0})
	sysPub.Publish(time.Now())
	if m := waitTopic(t, mIn, "$SYS/broker/cluster/minority", 10*time.Second); m.payload != "1" {
		t.Fatalf("$SYS/broker/cluster/minority on the cut-off node: %q", m.payload)
	}
	if m := waitTopic(t, mIn, "$SYS/broker/cluster/peers/up", 10*time.Second); m.payload != "0" {
		t.Fatalf("$SYS/broker/cluster/peers/up on the cut-off node: %q", m.payload)
	}
	if !strings.Contains(min.logs.String(), "is cut off from the majority") {
		t.Fatal("the cut-off node does not say so in its log")
	}
	// It refuses new CONNECTs within seconds.
	var took [2]time.Duration
	var wg sync.WaitGroup
	for i, v := range []byte{codec.Version5, codec.Version311} {
		wg.Add(1)
		go func() { defer wg.Done(); took[i] = refused(t, min.addr, "late"+strconv.Itoa(int(v)), v) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("minority refused v5 after %v, v3 after %v", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))

	// The majority goes on: new clients, messages, a retained message.
	// While JetStream re-elects leaders for what the cut-off node led, the
	// majority's registry may not answer either: a CONNECT there may be
	// refused (0x88) for some seconds, and the client connects again.
	MPub, _ := connectRetry(t, client.Options{Addr: nodes[1].addr, ClientID: "maj-pub", Version: codec.Version5, CleanStart: true})
	publish(t, MPub, &client.Message{Topic: []byte("part/maj"), Payload: []byte("majority"), QoS: 1})
	publish(t, MPub, &client.Message{Topic: []byte("part/ret"), Payload: []byte("set while cut"), QoS: 1, Retain: true})
	if m := waitTopic(t, MIn, "part/maj", 10*time.Second); m.payload != "majority" {
		t.Fatalf("majority subscriber got %+v", m)
	}
	// The majority takes the cut-off node for dead: it publishes the will of
	// its connected client and takes its persistent session over, which
	// queues what is published for it there.
	if m := waitTopic(t, MIn, "pwill/cut", 40*time.Second); m.payload != "cut off" {
		t.Fatalf("will: %+v", m)
	}
	waitFor(t, 40*time.Second, "the session adopted by n1", func() bool { _, ok := maj.b.SessionQueued("twice"); return ok })
	publish(t, MSub, &client.Message{Topic: []byte("twice/q"), Payload: []byte("queued while cut"), QoS: 1})
	waitQueued(t, maj, "twice", 1)
	o := client.Options{Addr: maj.addr, ClientID: "twice", Version: codec.Version5, MaxInflight: 100}
	o.Props.SessionExpiry = 600
	o.Props.Set(codec.PropSessionExpiry)
	dup2, dupIn := connectRetry(t, o)
	if !dup2.Connack().SessionPresent {
		t.Fatal("the session resumed on the majority side: session present 0")
	}
	if got := dupIn.wait(t, 1, 10*time.Second); got[0].payload != "queued while cut" {
		t.Fatalf("resumed on the majority: %+v", got[0])
	}
	t.Logf("cut for %v", time.Since(cut).Round(time.Millisecond))

	healed := time.Now()
	l.heal(reset)
	var conv []string
	mark := func(what string) { conv = append(conv, what+" "+time.Since(healed).Round(time.Millisecond).String()) }
	waitFor(t, 30*time.Second, "peers up again", func() bool {
		for _, tn := range nodes {
			if tn.node.Stats.PeersUp.Load() != 2 {
				return false
			}
		}
		return true
	})
	mark("peers")
	waitFor(t, 30*time.Second, "routes again", func() bool {
		return maj.node.hasRoute("n3", "part/#") && nodes[1].node.hasRoute("n3", "part/#") && min.node.hasRoute("n1", "part/#")
	})
	mark("routes")
	waitFor(t, 30*time.Second, "the retained message on n3", func() bool {
		return slices.Contains(min.b.RetainedTopics(), "part/ret")
	})
	mark("retained")
	// One session, one connection for the client id: the majority's.
	waitFor(t, 30*time.Second, "one connection for the client id", func() bool {
		select {
		case <-dup1.Done():
			return !slices.Contains(min.b.SessionIDs(), "twice")
		default:
			return false
		}
	})
	mark("one session")
	var ce *client.DisconnectError
	if err := dup1.Err(); !errors.As(err, &ce) || ce.Code != codec.SessionTakenOver {
		t.Errorf("the minority's connection ended with %v, want DISCONNECT 0x8E", err)
	}
	// New CONNECTs are taken on n3 again; the retained message is there.
	late, lateIn := connect(t, min.addr, "late-after", codec.Version5)
	mark("connect on n3")
	subscribe(t, late, nil, codec.Subscription{Filter: []byte("part/ret"), QoS: 1})
	if got := lateIn.wait(t, 1, 10*time.Second); got[0].payload != "set while cut" || !got[0].retain {
		t.Fatalf("retained on n3 after the heal: %+v", got[0])
	}
	sysPub.Publish(time.Now())
	waitFor(t, 10*time.Second, "$SYS/broker/cluster/minority 0", func() bool {
		for _, g := range mIn.snapshot() {
			if g.topic == "$SYS/broker/cluster/minority" && g.payload == "0" {
				return true
			}
		}
		return false
	})
	t.Logf("converged after the heal (%s): %v", map[bool]string{false: "links resumed", true: "connections reset"}[reset], conv)

	// Messages cross the old partition both ways.
	publish(t, MPub, &client.Message{Topic: []byte("part/to-min"), Payload: []byte("across"), QoS: 1})
	publish(t, mPub, &client.Message{Topic: []byte("part/to-maj"), Payload: []byte("back"), QoS: 1})
	waitTopic(t, mIn, "part/to-min", 10*time.Second)
	waitTopic(t, MIn, "part/to-maj", 10*time.Second)
	select {
	case <-dup2.Done():
		t.Fatalf("the majority's connection ended too: %v", dup2.Err())
	default:
	}
	if !slices.Contains(maj.b.SessionIDs(), "twice") {
		t.Fatal("no session for the client id on n1")
	}
	// The will's client was disconnected at the heal too (its session had
	// ended on the majority), without a second will.
	if err := waitClosed(t, cw, 10*time.Second); !errors.As(err, &ce) || ce.Code != codec.SessionTakenOver {
		t.Errorf("the will's client on the minority ended with %v, want DISCONNECT 0x8E", err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := countTopic(MIn, "pwill/cut"); n != 1 {
		t.Fatalf("the will arrived %d times", n)
	}
}

// waitTopic waits until in holds a message on topic.
func waitTopic(t testing.TB, in *inbox, topic string, d time.Duration) got {
	t.Helper()
	var m got
	waitFor(t, d, "a message on "+topic, func() bool {
		for _, g := range in.snapshot() {
			if g.topic == topic {
				m = g
				return true
			}
		}
		return false
	})
	return m
}

func init() { dumpLogs = os.Getenv("MIDGE_TEST_LOGS") != "" }

func countTopic(in *inbox, topic string) int {
	n := 0
	for _, g := range in.snapshot() {
		if g.topic == topic {
			n++
		}
	}
	return n
}

// connectRetry connects with o, again while the CONNECT is refused with
// "server unavailable" (30 s at most), and logs how long that took.
func connectRetry(t testing.TB, o client.Options) (*client.Client, *inbox) {
	t.Helper()
	start := time.Now()
	for refusals := 0; ; refusals++ {
		in := newInbox()
		c := client.New(o)
		c.OnMessage = in.add
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := c.Connect(ctx)
		cancel()
		if err == nil {
			if refusals > 0 {
				t.Logf("%s: connected after %d refusals (%v)", o.ClientID, refusals, time.Since(start).Round(time.Millisecond))
			}
			t.Cleanup(func() { _ = c.Close() })
			return c, in
		}
		_ = c.Close()
		var ce *client.ConnackError
		if !errors.As(err, &ce) || ce.Code != codec.ServerUnavailable || time.Since(start) > 30*time.Second {
			t.Fatalf("connect %s to %s: %v (after %d refusals)", o.ClientID, o.Addr, err, refusals)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
