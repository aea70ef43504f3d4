package main

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// persistentRemote is a midge with persistence holding the offline
// persistent session "rsub" subscribed to q/# at QoS 1, so that what the
// bridge delivers waits there whenever it comes.
func persistentRemote(t *testing.T) *node {
	t.Helper()
	r := newNode(t, "remote", "", false)
	r.write(fmt.Sprintf("persistence true\npersistence_location %s\nmax_queued_messages 0\n", t.TempDir()))
	r.start()
	cl := pahoClient(t, r.addr, "rsub", false, nil)
	waitToken(t, cl.Subscribe("q/#", 1, nil), "subscribe q/#")
	cl.Disconnect(100)
	return r
}

// drainRsub connects rsub and returns what it gets once n distinct messages
// came (and nothing more for a moment): all, in arrival order.
func drainRsub(t *testing.T, r *node, n int) []string {
	t.Helper()
	c := &collector{}
	cl := pahoClient(t, r.addr, "rsub", false, c.handle)
	defer cl.Disconnect(100)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := c.snapshot()
		if len(distinct(got)) >= n {
			time.Sleep(300 * time.Millisecond)
			return c.snapshot()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages: %q", len(distinct(got)), n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func distinct(msgs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range msgs {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// checkSequence checks that msgs hold q/0 .. q/n-1 (QoS 1), first copies in
// order, and returns the number of duplicates.
func checkSequence(t *testing.T, msgs []string, n int) int {
	t.Helper()
	d := distinct(msgs)
	if len(d) != n {
		t.Fatalf("%d distinct messages, want %d: %q", len(d), n, msgs)
	}
	for i, m := range d {
		if want := fmt.Sprintf("q/%d %d 1", i, i); m != want {
			t.Fatalf("message %d is %q, want %q (order lost)", i, m, want)
		}
	}
	return len(msgs) - n
}

func publishSequence(t *testing.T, cl mqtt.Client, from, to int, pace time.Duration) {
	t.Helper()
	for i := from; i < to; i++ {
		publish(t, cl, fmt.Sprintf("q/%d", i), fmt.Sprint(i), 1, false)
		if pace > 0 {
			time.Sleep(pace)
		}
	}
}

// TestBridgeRemoteDownAtStart: 100 QoS 1 messages published while the
// remote is down wait in the bridge's local session and reach the remote,
// in order, once it starts (mosquitto #1174).
func TestBridgeRemoteDownAtStart(t *testing.T) {
	remote := persistentRemote(t)
	remote.stop(syscall.SIGTERM)
	local := newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nrestart_timeout 1\ntopic q/# out 1\n", remote.addr), true)
	publishSequence(t, local.publisher("lp"), 0, 100, 0)
	remote.start()
	if dups := checkSequence(t, drainRsub(t, remote, 100), 100); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestBridgeRemoteKilled: the remote is SIGKILLed in the middle of a stream
// and restarted: the bridge's state goes 0 then 1 again, and nothing the
// local broker acknowledged is lost; what was in flight is resent
// (duplicates are counted, not lost).
func TestBridgeRemoteKilled(t *testing.T) {
	remote := persistentRemote(t)
	local := newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nrestart_timeout 1\ntopic q/# out 1\n", remote.addr), true)
	local.waitBridgeUp("ab")
	state, _ := local.sink("state", 1, stateTopic("ab")) // the retained "1" first
	state.waitFor(t, stateTopic("ab")+" 1 1")
	lp := local.publisher("lp")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		publishSequence(t, lp, 0, 300, 2*time.Millisecond)
	}()
	time.Sleep(200 * time.Millisecond)
	remote.stop(syscall.SIGKILL)
	state.waitCount(t, 2, 15*time.Second)
	remote.start()
	wg.Wait()
	dups := checkSequence(t, drainRsub(t, remote, 300), 300)
	t.Logf("300 messages, %d duplicates after the remote's crash", dups)
	got := state.snapshot()
	want := []string{stateTopic("ab") + " 1 1", stateTopic("ab") + " 0 1", stateTopic("ab") + " 1 1"}
	if len(got) < 3 || strings.Join(got[:3], ",") != strings.Join(want, ",") {
		t.Fatalf("state: %q, want %q", got, want)
	}
}

// TestBridgeLocalCrashKeepsQueue: with persistence, the bridge's queue of
// QoS 1 messages for a remote that is down survives a SIGKILL of the local
// broker (mosquitto #3394).
func TestBridgeLocalCrashKeepsQueue(t *testing.T) {
	remote := persistentRemote(t)
	remote.stop(syscall.SIGTERM)
	local := newNode(t, "local", "", false)
	local.write(fmt.Sprintf("persistence true\npersistence_location %s\nconnection ab\naddress %s\nrestart_timeout 1\n"+
		"cleansession false\ntopic q/# out 1\n", t.TempDir(), remote.addr))
	local.start()
	publishSequence(t, local.publisher("lp"), 0, 50, 0)
	local.stop(syscall.SIGKILL)
	local.start()
	remote.start()
	if dups := checkSequence(t, drainRsub(t, remote, 50), 50); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestBridgeBlackholedRemote: a remote that accepts TCP and never answers
// does not slow local traffic: the bridge waits off the event loops.
func TestBridgeBlackholedRemote(t *testing.T) {
	hole := blackhole(t)
	local := newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nkeepalive_interval 5\ntopic # out 1\n", hole), true)
	c, _ := local.sink("ls", 1, "t/#")
	lp := local.publisher("lp")
	start := time.Now()
	for i := 0; i < 1000; i++ {
		publish(t, lp, "t/x", fmt.Sprint(i), 1, false)
	}
	c.waitCount(t, 1000, 10*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("1000 local QoS 1 messages took %v beside a blackholed bridge", d)
	}
	start = time.Now()
	local.stop(syscall.SIGTERM) // the bridge's attempt under way does not hold the shutdown
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}

// blackhole listens on 127.0.0.1, accepts connections and never reads or
// answers; it returns its address.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
