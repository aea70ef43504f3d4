package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// write replaces the node's config: a listener, anonymous clients, extra.
func (n *node) write(extra string) {
	writeFile(n.t, n.conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nuser root\n%s", n.port, extra))
}

// checkBoth publishes one message on each side of a `topic # both 1 L/ R/`
// bridge and checks that each side gets both exactly once, and that no more
// comes for a while (no echo, no loop).
func checkBoth(t *testing.T, local, remote *node, quiet time.Duration) {
	t.Helper()
	ls, _ := local.sink("ls", 1, "L/#")
	rs, _ := remote.sink("rs", 1, "R/#")
	publish(t, local.publisher("lp"), "L/from-local", "a", 1, false)
	publish(t, remote.publisher("rp"), "R/from-remote", "b", 1, false)
	ls.waitCount(t, 2, 15*time.Second)
	rs.waitCount(t, 2, 15*time.Second)
	time.Sleep(quiet)
	sameSet(t, "local", ls.snapshot(), "L/from-local a 1", "L/from-remote b 1")
	sameSet(t, "remote", rs.snapshot(), "R/from-local a 1", "R/from-remote b 1")
}

// TestBridgeToMosquitto: Debian's mosquitto 2.0.11 as the remote, with
// 3.1.1 and try_private (mosquitto then gives the bridge no echo), with 5.0
// (the bridge asks for no-local itself), and with 3.1.1 without try_private
// (the bridge recognises the remote's echo of what it sent).
func TestBridgeToMosquitto(t *testing.T) {
	for _, tc := range []struct{ name, extra string }{
		{"mqttv311", ""},
		{"mqttv50", "bridge_protocol_version mqttv50\n"},
		{"mqttv311-no-try-private", "try_private false\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			remote := newMosquitto(t, "mosquitto", "")
			local := newNode(t, "local", fmt.Sprintf("connection m\naddress %s\nrestart_timeout 1\n%stopic # both 1 L/ R/\n",
				remote.addr, tc.extra), true)
			local.waitBridgeUp("m")
			checkBoth(t, local, remote, time.Second)
		})
	}
}

// TestMosquittoBridgesToMidge: Debian's mosquitto bridging to midge; midge as
// the remote honours try_private (no echo of the bridge's own messages) and
// lets the bridge write its state under $SYS/broker/connection/.
func TestMosquittoBridgesToMidge(t *testing.T) {
	remote := newNode(t, "midge", "", true)
	local := newMosquitto(t, "mosquitto", fmt.Sprintf("connection mm\naddress %s\nrestart_timeout 1\ntopic # both 1 L/ R/\n", remote.addr))
	remote.waitBridgeUp("mm") // mosquitto's notification, published on midge
	checkBoth(t, local, remote, time.Second)
}

// TestBridgeBothWaysNoLoop: two midges bridged to each other with `#` in
// both directions, by one bridge each way (v5, try_private false: only the
// midge-via mark of bridge_loop_guard stops the loop), and by one `# both` bridge over 3.1.1
// without try_private. Each message arrives once on each side, and the
// brokers stay quiet afterwards (mosquitto #3011, #204).
func TestBridgeBothWaysNoLoop(t *testing.T) {
	t.Run("two-bridges-v5", func(t *testing.T) {
		a := newNode(t, "a", "", false)
		b := newNode(t, "b", "", false)
		a.write(fmt.Sprintf("connection ab\naddress %s\nrestart_timeout 1\nbridge_protocol_version mqttv50\ntry_private false\nbridge_loop_guard true\ntopic # out 1\n", b.addr))
		b.write(fmt.Sprintf("connection ba\naddress %s\nrestart_timeout 1\nbridge_protocol_version mqttv50\ntry_private false\nbridge_loop_guard true\ntopic # out 1\n", a.addr))
		a.start()
		b.start()
		a.waitBridgeUp("ab")
		b.waitBridgeUp("ba")
		as, _ := a.sink("as", 1, "t/#")
		bs, _ := b.sink("bs", 1, "t/#")
		publish(t, a.publisher("ap"), "t/a", "1", 1, false)
		publish(t, b.publisher("bp"), "t/b", "2", 1, false)
		as.waitCount(t, 2, 15*time.Second)
		bs.waitCount(t, 2, 15*time.Second)
		time.Sleep(3 * time.Second) // a loop would bring more
		sameSet(t, "a", as.snapshot(), "t/a 1 1", "t/b 2 1")
		sameSet(t, "b", bs.snapshot(), "t/a 1 1", "t/b 2 1")
	})
	t.Run("one-both-bridge-v311", func(t *testing.T) {
		b := newNode(t, "b", "", true)
		a := newNode(t, "a", fmt.Sprintf("connection ab\naddress %s\nrestart_timeout 1\ntry_private false\ntopic # both 1\n", b.addr), true)
		a.waitBridgeUp("ab")
		as, _ := a.sink("as", 1, "t/#")
		bs, _ := b.sink("bs", 1, "t/#")
		publish(t, a.publisher("ap"), "t/a", "1", 1, false)
		publish(t, b.publisher("bp"), "t/b", "2", 1, false)
		as.waitCount(t, 2, 15*time.Second)
		bs.waitCount(t, 2, 15*time.Second)
		time.Sleep(3 * time.Second)
		sameSet(t, "a", as.snapshot(), "t/a 1 1", "t/b 2 1")
		sameSet(t, "b", bs.snapshot(), "t/a 1 1", "t/b 2 1")
	})
}

// TestBridgeRemoteMaximumQoS: a v5 bridge caps what it sends at the
// remote's maximum QoS (mosquitto's max_qos 1 disconnects a client that
// publishes at QoS 2).
func TestBridgeRemoteMaximumQoS(t *testing.T) {
	remote := newMosquitto(t, "mosquitto", "max_qos 1\n")
	local := newNode(t, "local", fmt.Sprintf("connection m\naddress %s\nbridge_protocol_version mqttv50\ntopic t/# out 2\n", remote.addr), true)
	local.waitBridgeUp("m")
	rs, _ := remote.sink("rs", 1, "t/#")
	lp := local.publisher("lp")
	for i := 0; i < 3; i++ {
		publish(t, lp, fmt.Sprintf("t/%d", i), "x", 2, false)
	}
	rs.waitCount(t, 3, 10*time.Second)
	sameSet(t, "remote", rs.snapshot(), "t/0 x 1", "t/1 x 1", "t/2 x 1")
	if strings.Count(local.out.String(), "Bridge m connected") != 1 {
		t.Fatalf("the bridge reconnected:\n%s", local.out.String())
	}
}

// TestBridgeNotificationsLocalOnly: notifications go to both brokers by
// default (a retained "1", and the will "0" on the remote), and only to the
// local one with notifications_local_only.
func TestBridgeNotificationsLocalOnly(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	both := newNode(t, "both", fmt.Sprintf("connection both\naddress %s\ntopic x out\n", remote.addr), true)
	only := newNode(t, "only", fmt.Sprintf("connection only\naddress %s\nnotifications_local_only true\ntopic x out\n", remote.addr), true)
	both.waitBridgeUp("both")
	only.waitBridgeUp("only")
	rs, _ := remote.sink("rs", 1, "$SYS/broker/connection/#")
	rs.waitFor(t, stateTopic("both")+" 1 1")
	both.stop(syscall.SIGKILL) // the will
	rs.waitFor(t, stateTopic("both")+" 0 1")
	time.Sleep(300 * time.Millisecond)
	for _, m := range rs.snapshot() {
		if strings.HasPrefix(m, stateTopic("only")) {
			t.Fatalf("notifications_local_only reached the remote: %q", m)
		}
	}
}
