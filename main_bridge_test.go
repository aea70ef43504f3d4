package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// node is one broker process of a bridge test, on a kernel-picked port.
type node struct {
	t    *testing.T
	port int
	addr string
	conf string
	cmd  *exec.Cmd
	out  *lockedBuffer
	mosq bool // Debian's mosquitto rather than midge
}

// newNode writes a config (a listener, anonymous clients, then extra) and
// starts midge on it unless start is false.
func newNode(t *testing.T, name, extra string, start bool) *node {
	t.Helper()
	port := freePort(t)
	n := &node{t: t, port: port, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	n.conf = filepath.Join(t.TempDir(), name+".conf")
	// user root: the tests' files are in directories only root may enter.
	writeFile(t, n.conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nuser root\n%s", port, extra))
	if start {
		n.start()
	}
	return n
}

// newMosquitto writes a mosquitto.conf and starts Debian's mosquitto on it.
func newMosquitto(t *testing.T, name, extra string) *node {
	t.Helper()
	if _, err := os.Stat("/usr/sbin/mosquitto"); err != nil {
		t.Fatal("/usr/sbin/mosquitto not found: run `make deps`")
	}
	n := newNode(t, name, extra, false)
	n.mosq = true
	n.start()
	return n
}

func (n *node) start() {
	n.t.Helper()
	if !n.mosq {
		// Registered first, so it runs after the broker has stopped: a
		// broker built with GOFLAGS=-race reports races in its output.
		var out *lockedBuffer
		n.t.Cleanup(func() {
			if out != nil && strings.Contains(out.String(), "DATA RACE") {
				n.t.Errorf("data race in the broker:\n%s", out.String())
			}
		})
		n.cmd, n.out = startMidge(n.t, n.addr, "-c", n.conf)
		out = n.out
		return
	}
	n.out = &lockedBuffer{}
	n.cmd = exec.Command("/usr/sbin/mosquitto", "-c", n.conf, "-v")
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	cmd, out, t := n.cmd, n.out, n.t
	t.Cleanup(func() {
		stopProcess(cmd, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})
	waitListening(t, n.addr)
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil && !selfConnected(c) {
			c.Close()
			return
		} else if err == nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the broker with sig (SIGKILL: a crash) and waits for it.
func (n *node) stop(sig syscall.Signal) {
	n.t.Helper()
	if !stopProcess(n.cmd, sig) {
		n.t.Fatalf("broker on %s did not stop on %v", n.addr, sig)
	}
}

// sink subscribes a paho client to filters at qos and collects what comes.
func (n *node) sink(id string, qos byte, filters ...string) (*collector, mqtt.Client) {
	n.t.Helper()
	c := &collector{}
	cl := pahoClient(n.t, n.addr, id, true, c.handle)
	for _, f := range filters {
		waitToken(n.t, cl.Subscribe(f, qos, nil), "subscribe "+f)
	}
	n.t.Cleanup(func() { cl.Disconnect(0) })
	return c, cl
}

// publisher is a paho client for publishing.
func (n *node) publisher(id string) mqtt.Client {
	n.t.Helper()
	cl := pahoClient(n.t, n.addr, id, true, nil)
	n.t.Cleanup(func() { cl.Disconnect(0) })
	return cl
}

func publish(t *testing.T, cl mqtt.Client, topic, payload string, qos byte, retain bool) {
	t.Helper()
	waitToken(t, cl.Publish(topic, qos, retain, payload), "publish "+topic)
}

// waitFor waits until c holds want (a "topic payload qos" line), or fails.
func (c *collector) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, m := range c.msgs {
			if m == want {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t.Fatalf("no %q in 15s; got %q", want, c.msgs)
}

// waitCount waits until c holds at least n messages and returns them.
func (c *collector) waitCount(t *testing.T, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		got := append([]string(nil), c.msgs...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages in %v: %q", len(got), n, within, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *collector) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

// stateTopic is a bridge's default notification topic on this machine.
func stateTopic(name string) string {
	host, _ := os.Hostname()
	return "$SYS/broker/connection/" + host + "." + name + "/state"
}

// waitBridgeUp waits for the bridge's retained state "1" on n.
func (n *node) waitBridgeUp(name string) {
	n.t.Helper()
	c, cl := n.sink(fmt.Sprintf("state-%d", time.Now().UnixNano()), 1, stateTopic(name))
	c.waitFor(n.t, stateTopic(name)+" 1 1")
	cl.Disconnect(0)
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func sameSet(t *testing.T, side string, got []string, want ...string) {
	t.Helper()
	if g, w := strings.Join(sorted(got), "\n"), strings.Join(sorted(want), "\n"); g != w {
		t.Errorf("%s got:\n%s\nwant:\n%s", side, g, w)
	}
}

// TestBridgeTopics: in, out and both, every prefix row of mosquitto.conf(5)'s
// table, the empty pattern, QoS capped by the topic line, retained messages
// both ways. Each message arrives once on each side it should reach and
// never on the other.
func TestBridgeTopics(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	local := newNode(t, "local", fmt.Sprintf(`connection ab
address %s
restart_timeout 1
topic out/# out 1
topic in/# in 1
topic # both 1 L/ R/
topic p/# out 1 L2/ ""
topic q/# in 1 "" R2/
topic "" both 1 single/local single/remote
topic down/# out 0
`, remote.addr), true)
	local.waitBridgeUp("ab")

	// Retained before anyone subscribes: the remote gets it from the bridge.
	lp, rp := local.publisher("lp"), remote.publisher("rp")
	publish(t, lp, "out/kept", "r1", 1, true)
	ls, _ := local.sink("ls", 2, "#")
	rs, _ := remote.sink("rs", 2, "#")
	rs.waitFor(t, "out/kept r1 1")

	publish(t, lp, "out/a", "1", 1, false)
	publish(t, rp, "in/b", "2", 1, false)
	publish(t, lp, "L/c/d", "3", 1, false)
	publish(t, rp, "R/e", "4", 1, false)
	publish(t, lp, "L2/p/f", "5", 1, false)
	publish(t, rp, "R2/q/g", "6", 1, false)
	publish(t, lp, "single/local", "7", 1, false)
	publish(t, rp, "single/remote", "8", 1, false)
	publish(t, lp, "down/h", "9", 1, false)
	publish(t, rp, "out/i", "10", 1, false) // an out topic: stays remote
	publish(t, lp, "in/j", "11", 1, false)  // an in topic: stays local
	publish(t, rp, "in/kept", "r2", 1, true)

	remoteWant := []string{"out/kept r1 1", "out/a 1 1", "in/b 2 1", "R/c/d 3 1", "R/e 4 1", "p/f 5 1",
		"R2/q/g 6 1", "single/remote 7 1", "single/remote 8 1", "down/h 9 0", "out/i 10 1", "in/kept r2 1"}
	localWant := []string{"out/kept r1 1", "out/a 1 1", "in/b 2 1", "L/c/d 3 1", "L/e 4 1", "L2/p/f 5 1", "q/g 6 1",
		"single/local 7 1", "single/local 8 1", "down/h 9 1", "in/j 11 1", "in/kept r2 1"}
	rs.waitCount(t, len(remoteWant), 15*time.Second)
	ls.waitCount(t, len(localWant), 15*time.Second)
	time.Sleep(time.Second) // nothing more may come
	sameSet(t, "remote", rs.snapshot(), remoteWant...)
	sameSet(t, "local", ls.snapshot(), localWant...)

	// The retained message that came in is retained locally too.
	late, _ := local.sink("late", 1, "in/kept")
	late.waitFor(t, "in/kept r2 1")
}

// TestBridgeDefaults: the client ids the remote sees are mosquitto's code's
// defaults (<hostname>.<name>, clean session 0), not its man page's; the
// local one is local.<remote id>.
func TestBridgeDefaults(t *testing.T) {
	remote := newNode(t, "remote", "", true)
	local := newNode(t, "local", fmt.Sprintf("connection edge\naddress %s\ntopic x out\n", remote.addr), true)
	local.waitBridgeUp("edge")
	host, _ := os.Hostname()
	if want := " as " + host + ".edge (p2, c0, k60)"; !strings.Contains(remote.out.String(), want) {
		t.Errorf("remote log lacks %q:\n%s", want, remote.out.String())
	}
	if want := "from bridge edge as local." + host + ".edge (p5"; !strings.Contains(local.out.String(), want) {
		t.Errorf("local log lacks %q:\n%s", want, local.out.String())
	}
}

// TestBridgeConfigErrors: a bad bridge stops the broker with FILE:LINE: KEY.
func TestBridgeConfigErrors(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{"connection a\naddress 127.0.0.1\ntopic x out 3\n", ":3: topic: expected a QoS of 0, 1 or 2"},
		{"connection a\ntopic x\n", ":1: connection: bridge \"a\" has no address"},
		{"connection a\naddress h\ntopic x\nrestart_timeout 30 10\n", ":4: restart_timeout: the cap (10) is lower than the base (30)"},
		{"connection a\naddress h\ntopic x\nbridge_cafile /nonexistent/ca.pem\n", "connection a: bridge CA: open /nonexistent/ca.pem"},
	} {
		conf := filepath.Join(t.TempDir(), "bad.conf")
		writeFile(t, conf, tc.conf)
		out, err := exec.Command(midgeBin, "-c", conf).CombinedOutput()
		if err == nil || !strings.Contains(string(out), conf+tc.want) && !strings.Contains(string(out), tc.want) {
			t.Errorf("%q: err %v, output %s; want %q", tc.conf, err, out, tc.want)
		}
	}
}
