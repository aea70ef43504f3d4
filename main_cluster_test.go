package main

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// clusterProc is one `midge -c` process of a three-node cluster.
type clusterProc struct {
	name, conf, addr string
	cmd              *exec.Cmd
	out              *lockedBuffer
	stopped          bool
}

// writeClusterConfigs writes the configs of n nodes on loopback: MQTT and
// route ports picked by the kernel, each node listing all routes.
func writeClusterConfigs(t *testing.T, n int) []*clusterProc {
	t.Helper()
	var routes []string
	for range n {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	}
	var ps []*clusterProc
	for i := range n {
		dir := t.TempDir()
		p := &clusterProc{name: fmt.Sprintf("node%d", i+1), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		p.conf = filepath.Join(dir, "midge.conf")
		_, port, _ := net.SplitHostPort(p.addr)
		writeFile(t, p.conf, fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\nsys_interval 1\nuser root\n"+
			"persistence_location %s\ncluster_name ci\ncluster_node_name %s\ncluster_listen %s\ncluster_peers %s\n",
			port, dir, p.name, routes[i], strings.Join(routes, " ")))
		ps = append(ps, p)
	}
	return ps
}

// start runs the node; wait waits until it listens (after joining).
func (p *clusterProc) start(t *testing.T) {
	t.Helper()
	p.out = &lockedBuffer{}
	p.cmd = exec.Command(midgeBin, "-c", p.conf)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.stopped = false
	t.Cleanup(func() {
		p.stop(t, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.out.String())
		}
	})
}

func (p *clusterProc) stop(t *testing.T, sig syscall.Signal) {
	if p.stopped {
		return
	}
	p.stopped = true
	if !stopProcess(p.cmd, sig) {
		t.Errorf("%s did not stop on %v", p.name, sig)
	}
}

func (p *clusterProc) wait(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s: %v\n%s", p.name, p.addr, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logLine waits for a line of p's log matching re and returns when it came.
func (p *clusterProc) logLine(t *testing.T, re string, d time.Duration) time.Time {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if rx.MatchString(p.out.String()) {
			return time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: no log line matching %q in %v", p.name, re, d)
	return time.Time{}
}

// TestClusterProcesses runs three `midge` processes from the built binary:
// Debian's mosquitto_pub/sub and paho on different nodes, retained messages
// from every node, $SYS/broker/cluster, then a node killed (SIGKILL) and
// one stopped (SIGTERM) while messages flow between the others.
func TestClusterProcesses(t *testing.T) {
	needMosquittoClients(t)
	ps := writeClusterConfigs(t, 3)
	for _, p := range ps {
		p.start(t)
	}
	for _, p := range ps {
		p.wait(t)
	}
	host := func(p *clusterProc) []string {
		h, port, _ := net.SplitHostPort(p.addr)
		return []string{"-h", h, "-p", port}
	}

	// mosquitto_sub on node3 and paho on node2; mosquitto_pub on node1.
	var got collector
	sub2 := pahoClient(t, ps[1].addr, "paho-sub", true, got.handle)
	defer sub2.Disconnect(0)
	waitToken(t, sub2.Subscribe("cross/#", 1, nil), "subscribe")
	msub := exec.Command("mosquitto_sub", append(host(ps[2]), "-t", "cross/#", "-q", "2", "-C", "3", "-v", "-W", "60")...)
	var msubOut lockedBuffer
	msub.Stdout, msub.Stderr = &msubOut, &msubOut
	if err := msub.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return routesOn(t, ps[0].addr) >= 2 }) // node2's and node3's cross/#
	for q := 0; q < 3; q++ {
		pub := exec.Command("mosquitto_pub", append(host(ps[0]), "-t", fmt.Sprintf("cross/%d", q), "-m", fmt.Sprintf("m%d", q), "-q", fmt.Sprint(q))...)
		if out, err := pub.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	if err := msub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v %s", err, msubOut.String())
	}
	if want := "cross/0 m0\ncross/1 m1\ncross/2 m2\n"; msubOut.String() != want {
		t.Fatalf("mosquitto_sub on node3 got %q, want %q", msubOut.String(), want)
	}
	if msgs := got.quietFor(300 * time.Millisecond); strings.Join(msgs, ",") != "cross/0 m0 0,cross/1 m1 1,cross/2 m2 1" {
		t.Fatalf("paho on node2 got %v", msgs)
	}

	// Retained set on each node, seen from every node; then cleared.
	for i, p := range ps {
		pub := exec.Command("mosquitto_pub", append(host(p), "-t", fmt.Sprintf("ret/%d", i), "-m", p.name, "-r", "-q", "1")...)
		if out, err := pub.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub -r: %v %s", err, out)
		}
	}
	for _, p := range ps {
		waitWithin(t, retainedWait, func() bool {
			out, _ := exec.Command("mosquitto_sub", append(host(p), "-t", "ret/#", "-v", "-W", "4", "--retained-only")...).Output()
			return string(out) == "ret/0 node1\nret/1 node2\nret/2 node3\n"
		})
	}
	if out, err := exec.Command("mosquitto_pub", append(host(ps[2]), "-t", "ret/0", "-n", "-r")...).CombinedOutput(); err != nil {
		t.Fatalf("clear: %v %s", err, out)
	}
	waitWithin(t, retainedWait, func() bool {
		out, _ := exec.Command("mosquitto_sub", append(host(ps[0]), "-t", "ret/#", "-v", "-W", "4", "--retained-only")...).Output()
		return string(out) == "ret/1 node2\nret/2 node3\n"
	})

	// $SYS/broker/cluster/...
	out, _ := exec.Command("mosquitto_sub", append(host(ps[0]), "-t", "$SYS/broker/cluster/#", "-v", "-W", "3")...).Output()
	for _, want := range []string{"$SYS/broker/cluster/node node1", "$SYS/broker/cluster/peers/up 2", "$SYS/broker/cluster/messages/forwarded "} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("$SYS/broker/cluster: no %q in\n%s", want, out)
		}
	}

	// Messages flow node1 → node2 while node3 is killed, then stopped again.
	var flowMu sync.Mutex
	var flow []string
	probes := 0
	sub := pahoClient(t, ps[1].addr, "flow-sub", true, func(_ mqtt.Client, m mqtt.Message) {
		flowMu.Lock()
		defer flowMu.Unlock()
		if string(m.Payload()) == "probe" {
			probes++
			return
		}
		flow = append(flow, string(m.Payload()))
	})
	defer sub.Disconnect(0)
	waitToken(t, sub.Subscribe("flow", 1, nil), "subscribe flow")
	pub := pahoClient(t, ps[0].addr, "flow-pub", true, nil)
	defer pub.Disconnect(0)
	waitFor(t, func() bool { // node2's route for "flow" is in force on node1
		pub.Publish("flow", 0, false, "probe").Wait()
		time.Sleep(50 * time.Millisecond)
		flowMu.Lock()
		defer flowMu.Unlock()
		return probes > 0
	})
	stopFlow := make(chan struct{})
	flowDone := make(chan int)
	go func() {
		i := 0
		for {
			select {
			case <-stopFlow:
				flowDone <- i
				return
			default:
			}
			if tok := pub.Publish("flow", 1, false, fmt.Sprint(i)); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
				i++
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	killed := time.Now()
	ps[2].stop(t, syscall.SIGKILL)
	downAt := ps[0].logLine(t, `node node3 down \(no heartbeat`, 30*time.Second)
	t.Logf("SIGKILL: node1 removed node3's routes %v after the kill", downAt.Sub(killed).Round(time.Millisecond))
	// Restarted, node3 loads the routes and retained messages before it listens.
	ps[2].start(t)
	ps[2].wait(t)
	// Its SUBACK waits until the others route ret/# to it: a JetStream
	// write just after a restart may take more than a second here, and a
	// peer's watch of the routes, whose stream lost a replica with the
	// kill, may not confirm for a few seconds (each SUBACK then waits up
	// to syncWait, 2 s, for it).
	waitWithin(t, retainedWait, func() bool {
		out, _ = exec.Command("mosquitto_sub", append(host(ps[2]), "-t", "ret/#", "-v", "-W", "6", "--retained-only")...).Output()
		return string(out) == "ret/1 node2\nret/2 node3\n"
	})
	// ... and the routes: published on node3 as soon as it listens, a
	// message reaches node2's subscriber.
	if out, err := exec.Command("mosquitto_pub", append(host(ps[2]), "-t", "cross/late", "-m", "late", "-q", "1")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	waitFor(t, func() bool {
		msgs := got.quietFor(0)
		return len(msgs) > 0 && msgs[len(msgs)-1] == "cross/late late 1"
	})
	termed := time.Now()
	ps[2].stop(t, syscall.SIGTERM)
	downAt = ps[0].logLine(t, `node node3 down \(it left\)`, 30*time.Second)
	t.Logf("SIGTERM: node1 removed node3's routes %v after the signal", downAt.Sub(termed).Round(time.Millisecond))
	close(stopFlow)
	sent := <-flowDone
	waitFor(t, func() bool {
		flowMu.Lock()
		defer flowMu.Unlock()
		return len(flow) >= sent
	})
	flowMu.Lock()
	defer flowMu.Unlock()
	for i := 0; i < sent; i++ { // QoS 1 between live nodes: none lost, in order
		if flow[i] != fmt.Sprint(i) {
			t.Fatalf("flow message %d is %q (of %d sent)", i, flow[i], sent)
		}
	}
	t.Logf("%d messages flowed node1 → node2 while node3 was killed, restarted and stopped", sent)
}

// routesOn reads $SYS/broker/cluster/routes of a node (-1 if not yet published).
func routesOn(t *testing.T, addr string) int {
	h, port, _ := net.SplitHostPort(addr)
	out, _ := exec.Command("mosquitto_sub", "-h", h, "-p", port, "-t", "$SYS/broker/cluster/routes", "-C", "1", "-W", "2").Output()
	var n int
	if _, err := fmt.Sscan(string(out), &n); err != nil {
		return -1
	}
	return n
}

// retainedWait bounds the checks of retained messages, each made by a
// subscriber that waits seconds: a first SUBSCRIBE of a filter on a node
// waits until the other nodes route it (up to syncWait, 2 s, per peer slow
// to confirm, as one is while the routes' stream recovers from a killed
// replica), and --retained-only waits out its -W.
const retainedWait = 45 * time.Second
