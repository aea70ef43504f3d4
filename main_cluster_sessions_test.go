package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestClusterSessionKill runs three `midge` processes and SIGKILLs the node
// that holds an offline persistent session with 1,000 queued QoS 1
// messages and a connected client with a will: the will arrives on the
// other nodes once, and the session, resumed on another node, delivers all
// 1,000 messages (session present 1).
func TestClusterSessionKill(t *testing.T) {
	ps := writeClusterConfigs(t, 3)
	for _, p := range ps {
		p.start(t)
	}
	for _, p := range ps {
		p.wait(t)
	}

	// An offline persistent session on node1: subscribed, then gone.
	sess := pahoClient(t, ps[0].addr, "keeper", false, nil)
	waitToken(t, sess.Subscribe("kq/#", 1, nil), "subscribe")
	sess.Disconnect(100)

	// A connected client with a will on node1; its will is watched on node3.
	var wills collector
	watcher := pahoClient(t, ps[2].addr, "will-watcher", true, wills.handle)
	defer watcher.Disconnect(0)
	waitToken(t, watcher.Subscribe("wills/#", 1, nil), "subscribe")
	wo := mqtt.NewClientOptions().AddBroker("tcp://"+ps[0].addr).SetClientID("dier").SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5*time.Second).
		SetKeepAlive(60*time.Second).SetWill("wills/dier", "gone", 1, false)
	dier := mqtt.NewClient(wo)
	waitToken(t, dier.Connect(), "connect dier")
	defer dier.Disconnect(0)

	// 1,000 QoS 1 messages for the session, published on node2.
	waitFor(t, func() bool { return routesOn(t, ps[1].addr) >= 2 }) // kq/# of node1, wills/# of node3
	pub := pahoClient(t, ps[1].addr, "kq-pub", true, nil)
	defer pub.Disconnect(0)
	const total = 1000
	var toks []mqtt.Token
	for i := range total {
		toks = append(toks, pub.Publish("kq/x", 1, false, fmt.Sprint(i)))
	}
	for _, tok := range toks {
		waitToken(t, tok, "publish")
	}
	// Queued messages are replicated asynchronously (no persistence_sync
	// always here): let the last writes land before the kill.
	time.Sleep(time.Second)

	killed := time.Now()
	ps[0].stop(t, syscall.SIGKILL)

	got := wills.waitCount(t, 1, 30*time.Second)
	willAfter := time.Since(killed)
	if got[0] != "wills/dier gone 1" {
		t.Fatalf("will: %q", got[0])
	}
	// The live node with the lowest name takes the dead node's sessions.
	ps[1].logLine(t, `took over \d+ sessions of node node1`, 30*time.Second)
	adoptedAfter := time.Since(killed)

	// Resumed on node3: session present, every message.
	dups := resumeKeeper(t, ps[2].addr, total)
	time.Sleep(500 * time.Millisecond)
	if n := len(wills.snapshot()); n != 1 {
		t.Fatalf("the will arrived %d times, want once", n)
	}
	t.Logf("SIGKILL to the will on node3: %v; to the sessions taken over: %v; %d duplicates of %d",
		willAfter.Round(time.Millisecond), adoptedAfter.Round(time.Millisecond), dups, total)
	if strings.Contains(ps[1].out.String(), "panic") || strings.Contains(ps[2].out.String(), "panic") {
		t.Fatal("a node panicked")
	}
}

// resumeKeeper resumes the persistent session "keeper" (subscribed to kq/#)
// on addr and checks that it is present with every one of the total
// messages "kq/x N" queued for it; it returns the duplicates received.
func resumeKeeper(t *testing.T, addr string, total int) (dups int) {
	t.Helper()
	var in collector
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("keeper").SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second).SetOrderMatters(true).
		SetDefaultPublishHandler(in.handle)
	c := mqtt.NewClient(o)
	tok := c.Connect()
	waitToken(t, tok, "resume keeper")
	defer c.Disconnect(0)
	if !tok.(*mqtt.ConnectToken).SessionPresent() {
		t.Fatalf("resumed on %s: session present 0, want 1", addr)
	}
	msgs := in.waitCount(t, total, 60*time.Second)
	msgs = append(msgs, in.quietFor(500 * time.Millisecond)[len(msgs):]...)
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m]++
	}
	missing := 0
	for i := range total {
		if seen[fmt.Sprintf("kq/x %d 1", i)] == 0 {
			missing++
		}
	}
	dups = len(msgs) - len(seen)
	if missing > 0 {
		t.Fatalf("%d of %d queued messages lost (%d received, %d duplicates)", missing, total, len(msgs), dups)
	}
	return dups
}
