package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitLog waits until the broker's output contains s.
func (n *node) waitLog(s string, within time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(n.out.String(), s) {
		if time.Now().After(deadline) {
			n.t.Fatalf("no %q in %v of the log of %s:\n%s", s, within, n.addr, n.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func bridgeClientLog(name string) string {
	host, _ := os.Hostname()
	return " as " + host + "." + name + " ("
}

// TestBridgeFailover: with two addresses, round_robin false treats the
// first as the main one (the bridge goes back to it when it returns);
// round_robin true stays where it is connected until that fails.
func TestBridgeFailover(t *testing.T) {
	for _, rr := range []bool{false, true} {
		t.Run(fmt.Sprintf("round_robin=%v", rr), func(t *testing.T) {
			main := newNode(t, "main", "", false)
			second := newNode(t, "second", "", true)
			local := newNode(t, "local", fmt.Sprintf("connection ab\naddresses %s %s\nround_robin %v\nrestart_timeout 1\ntopic t/# out 1\n",
				main.addr, second.addr, rr), true)
			local.waitBridgeUp("ab")
			second.waitLog(bridgeClientLog("ab"), 10*time.Second)
			ss, _ := second.sink("ss", 1, "t/#")
			lp := local.publisher("lp")
			publish(t, lp, "t/1", "1", 1, false)
			ss.waitFor(t, "t/1 1 1")

			main.start()
			if !rr {
				main.waitLog(bridgeClientLog("ab"), 10*time.Second)
				ms, _ := main.sink("ms", 1, "t/#")
				publish(t, lp, "t/2", "2", 1, false)
				ms.waitFor(t, "t/2 2 1")
				return
			}
			time.Sleep(3 * time.Second) // the bridge stays on the second address
			if strings.Contains(main.out.String(), bridgeClientLog("ab")) {
				t.Fatal("round_robin true went back to the first address")
			}
			publish(t, lp, "t/2", "2", 1, false)
			ss.waitFor(t, "t/2 2 1")
			second.stop(syscall.SIGTERM)
			main.waitLog(bridgeClientLog("ab"), 10*time.Second)
			ms, _ := main.sink("ms", 1, "t/#")
			publish(t, lp, "t/3", "3", 1, false)
			ms.waitFor(t, "t/3 3 1")
		})
	}
}

// TestBridgeStartTypes: `once` connects at start only (a remote that comes
// later is never reached); `lazy` connects once `threshold` messages wait and
// stops after `idle_timeout`.
func TestBridgeStartTypes(t *testing.T) {
	t.Run("once", func(t *testing.T) {
		remote := newNode(t, "remote", "", false)
		local := newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nstart_type once\nrestart_timeout 1\ntopic t/# out 1\n", remote.addr), true)
		local.waitLog("start_type once: not restarting", 10*time.Second)
		remote.start()
		time.Sleep(2500 * time.Millisecond)
		if strings.Contains(remote.out.String(), bridgeClientLog("ab")) {
			t.Fatal("a once bridge reconnected")
		}
	})
	t.Run("lazy", func(t *testing.T) {
		remote := newNode(t, "remote", "", true)
		local := newNode(t, "local", fmt.Sprintf("connection ab\naddress %s\nstart_type lazy\nthreshold 5\nidle_timeout 1\ntopic q/# out 1\n", remote.addr), true)
		state, _ := local.sink("state", 1, stateTopic("ab"))
		state.waitFor(t, stateTopic("ab")+" 0 1")
		rs, _ := remote.sink("rs", 1, "q/#")
		lp := local.publisher("lp")
		publishSequence(t, lp, 0, 4, 0)
		time.Sleep(time.Second)
		if strings.Contains(remote.out.String(), bridgeClientLog("ab")) {
			t.Fatal("a lazy bridge connected below its threshold")
		}
		publishSequence(t, lp, 4, 5, 0)
		if got := rs.waitCount(t, 5, 10*time.Second); checkSequence(t, got, 5) != 0 {
			t.Errorf("duplicates: %q", got)
		}
		state.waitCount(t, 3, 10*time.Second) // 0, 1, then 0 after idle_timeout
		if got := state.snapshot(); got[1] != stateTopic("ab")+" 1 1" || got[2] != stateTopic("ab")+" 0 1" {
			t.Fatalf("state: %q", got)
		}
		local.waitLog("idle for 1s; stopping (lazy)", 5*time.Second)
	})
}

// TestBridgeReload: SIGHUP applies the bridges of the re-read file: a removed
// bridge stops, an added one starts, a changed one restarts with its new
// topics; local clients stay connected throughout (mosquitto #1699, #2411).
func TestBridgeReload(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	local := newNode(t, "local", fmt.Sprintf("connection one\naddress %s\ntopic a/# out 1\n", remote.addr), true)
	local.waitBridgeUp("one")
	ls, _ := local.sink("ls", 1, "local/#")
	rs, _ := remote.sink("rs", 1, "#")
	lp := local.publisher("lp")

	local.write(fmt.Sprintf("connection two\naddress %s\ntopic b/# out 1\n", remote.addr))
	_ = local.cmd.Process.Signal(syscall.SIGHUP)
	local.waitBridgeUp("two")
	host, _ := os.Hostname()
	remote.waitLog("Client "+host+".one disconnected.", 10*time.Second)
	publish(t, lp, "a/1", "gone", 1, false)
	publish(t, lp, "b/1", "new", 1, false)
	rs.waitFor(t, "b/1 new 1")

	local.write(fmt.Sprintf("connection two\naddress %s\ntopic c/# out 1\n", remote.addr))
	_ = local.cmd.Process.Signal(syscall.SIGHUP)
	local.waitLog("Bridge two: configuration changed; restarting it.", 10*time.Second)
	local.waitBridgeUp("two")
	publish(t, lp, "c/1", "changed", 1, false)
	rs.waitFor(t, "c/1 changed 1")
	for _, m := range rs.snapshot() {
		if strings.HasPrefix(m, "a/") {
			t.Fatalf("a removed bridge forwarded %q", m)
		}
	}
	publish(t, lp, "local/x", "still here", 1, false)
	ls.waitFor(t, "local/x still here 1")
	if strings.Contains(local.out.String(), "Client ls closed") || strings.Contains(local.out.String(), "Client lp closed") {
		t.Fatal("a reload dropped a client")
	}
}

// TestBridgeSysAndMetrics: a bridge's state and counters in $SYS and /metrics.
func TestBridgeSysAndMetrics(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	mport := freePort(t)
	local := newNode(t, "local", fmt.Sprintf("sys_interval 1\nmetrics_listener 127.0.0.1:%d\nconnection ab\naddress %s\ntopic t/# out 1\n",
		mport, remote.addr), true)
	local.waitBridgeUp("ab")
	rs, _ := remote.sink("rs", 1, "t/#")
	publish(t, local.publisher("lp"), "t/x", "hello", 1, false)
	rs.waitFor(t, "t/x hello 1")
	sys, _ := local.sink("sys", 0, "$SYS/broker/bridge/ab/#")
	sys.waitFor(t, "$SYS/broker/bridge/ab/connected 1 0")
	sys.waitFor(t, "$SYS/broker/bridge/ab/messages/sent 1 0")
	sys.waitFor(t, "$SYS/broker/bridge/ab/bytes/sent 5 0")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`midge_bridge_connected{bridge="ab"} 1`, `midge_bridge_messages_total{bridge="ab",direction="out"} 1`,
		`midge_bridge_queued_messages{bridge="ab"} 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
