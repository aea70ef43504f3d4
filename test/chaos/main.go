//go:build linux

// Command chaos is the root-only partition test of a midge cluster (issue
// 14; `make cluster-chaos`): three midge processes, each in its own
// network namespace, joined by veth pairs to a bridge in a fourth (hub)
// namespace. Each round cuts node n3's link in the hub, checks what each
// side does while cut (the majority declares n3 dead, n3 says it is cut
// off and refuses new CONNECTs, the majority takes a retained message and
// a client id that n3 still holds), then plugs it back and measures how
// long until the cluster has converged: peers up, routes both ways, the
// retained message on n3, one session for the client id (n3's copy
// disconnected with 0x8E), CONNECTs taken on n3. Clients are real, their
// sockets made inside the namespaces. Any failed check exits 1, with the
// tail of each node's log; the namespaces and processes go either way.
//
//	make cluster-chaos                    # as root
//	go run ./test/chaos -cuts blackhole   # one kind of cut
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

var (
	netw    *network
	nodes   []*node
	workDir string
	hold    time.Duration
	ending  atomic.Bool // the first failure ends the run; later ones (its echoes) are not reported
)

// end stops the nodes and removes the namespaces; on failure it keeps the
// logs and prints their tails. It exits, once, whoever calls it.
func end(code int) {
	if !ending.CompareAndSwap(false, true) {
		select {} // another caller is ending the run
	}
	finish(code)
}

func failf(format string, args ...any) {
	if !ending.CompareAndSwap(false, true) {
		select {}
	}
	fmt.Printf("cluster-chaos: FAIL: "+format+"\n", args...)
	finish(1)
}

func finish(code int) {
	for _, n := range nodes {
		n.stop()
	}
	if netw != nil {
		remove(netw.names(3))
	}
	if code != 0 && workDir != "" {
		for _, n := range nodes {
			lines := strings.Split(strings.TrimSpace(n.log()), "\n")
			fmt.Printf("--- %s, last lines of %s:\n%s\n", n.name, n.logPath(), strings.Join(lines[max(0, len(lines)-25):], "\n"))
		}
	} else if workDir != "" {
		os.RemoveAll(workDir)
	}
	os.Exit(code)
}

func refuse(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cluster-chaos: cannot run: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	bin := flag.String("midge", "bin/midge", "the midge binary")
	which := flag.String("cuts", "unplug,blackhole", "the cuts to run, one round each, in this order")
	timeout := flag.Duration("timeout", 5*time.Minute, "the whole run's bound")
	flag.DurationVar(&hold, "hold", 0, "keep each cut at least this long (0: as long as its checks take, ~9-14 s)")
	flag.Parse()

	if os.Geteuid() != 0 {
		refuse("it must run as root (it makes network namespaces, veth pairs and a bridge)")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		refuse("`ip netns` is not available (%s): install iproute2", strings.TrimSpace(fmt.Sprint(err, " ", string(out))))
	}
	if _, err := exec.LookPath("bridge"); err != nil {
		refuse("the `bridge` command (iproute2) is missing")
	}
	var rounds []cut
	for _, name := range strings.Split(*which, ",") {
		i := indexCut(name)
		if i < 0 {
			refuse("no cut %q (unplug, blackhole)", name)
		}
		rounds = append(rounds, cuts[i])
	}
	abs, err := filepath.Abs(*bin)
	if err != nil || !isExec(abs) {
		refuse("no midge binary at %s (make build)", *bin)
	}

	removeLeftovers()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() { failf("interrupted (%v)", <-sig) }()
	time.AfterFunc(*timeout, func() { failf("the run took more than %v", *timeout) })

	if workDir, err = os.MkdirTemp("", "midge-chaos"); err != nil {
		failf("%v", err)
	}
	os.Chmod(workDir, 0o755)
	netw = newNetwork()
	if err := netw.up(3); err != nil {
		failf("making the network: %v", err)
	}
	began := time.Now()
	for i := 1; i <= 3; i++ {
		n := &node{i: i, name: "n" + strconv.Itoa(i), ns: netw.ns(i), dir: filepath.Join(workDir, "n"+strconv.Itoa(i))}
		nodes = append(nodes, n)
		if err := n.start(abs, 3); err != nil {
			failf("starting %s: %v", n.name, err)
		}
	}
	// A node opens its listener once it has joined.
	for _, n := range nodes {
		waitUntil(90*time.Second, n.name+" listening", func() bool {
			c, err := n.dial(opts("probe-"+n.name, codec.Version5, 0))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	fmt.Printf("cluster-chaos: 3 nodes in %s* (10.213.0.1-3), listening %.1f s after the start; logs in %s\n",
		netw.prefix, time.Since(began).Seconds(), workDir)

	var summary []string
	for r, c := range rounds {
		summary = append(summary, round(r+1, c))
	}
	fmt.Printf("cluster-chaos: ok, %d rounds in %.0f s\n  %s\n", len(rounds), time.Since(began).Seconds(), strings.Join(summary, "\n  "))
	end(0)
}

func indexCut(name string) int {
	for i, c := range cuts {
		if c.name == name {
			return i
		}
	}
	return -1
}

func isExec(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&0o111 != 0
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }

// round cuts n3 off with c, checks both sides, heals and measures the
// convergence; it returns a one-line summary.
func round(r int, c cut) string {
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	p := "r" + strconv.Itoa(r) // client ids and topics of this round
	fmt.Printf("round %d: %s (n3's link: %s)\n", r, c.name, c.how)

	// A watcher per node: $SYS and this round's topics.
	w := make([]*conn, 3)
	for i, n := range nodes {
		w[i] = n.mustDial(opts(p+"-watch-"+n.name, codec.Version5, 0))
		w[i].subscribe("$SYS/broker/cluster/#", p+"/#")
		defer w[i].Close()
	}
	for i := range w {
		waitUntil(10*time.Second, nodes[i].name+": $SYS peers/up 2", func() bool { return w[i].last("$SYS/broker/cluster/peers/up") == "2" })
	}
	// A persistent session on n3; its client id connects on n1 during the cut.
	twice3 := n3.mustDial(opts(p+"-twice", codec.Version5, 600))
	defer twice3.Close()
	twice3.subscribe(p + "/twice/#")
	crossing(w[0], w[2], p+"/pre/to3", 20*time.Second)
	crossing(w[2], w[0], p+"/pre/to1", 20*time.Second)
	// The session's snapshot is written to the cluster's stream
	// asynchronously, and right after a heal JetStream may not take it for
	// seconds: the majority can take over only what was written before
	// the cut. Wait a $SYS tick past the SUBSCRIBE, then until nothing is
	// pending on n3.
	time.Sleep(1500 * time.Millisecond)
	if d := waitUntil(30*time.Second, "n3: $SYS sessions/state-pending 0", func() bool {
		return w[2].last("$SYS/broker/cluster/sessions/state-pending") == "0"
	}); d > 100*time.Millisecond {
		fmt.Printf("  n3's session state written to the stream %s later than at once\n", secs(d))
	}

	marks := []int{n1.logMark(), n2.logMark(), n3.logMark()}
	cutAt := time.Now()
	if err := c.apply(netw, 3); err != nil {
		failf("cut: %v", err)
	}
	// The majority declares n3 dead: log, then $SYS.
	dead1 := n1.waitLog(marks[0], "node n3 down", cutAt, 15*time.Second)
	dead2 := n2.waitLog(marks[1], "node n3 down", cutAt, 15*time.Second)
	for i := range 2 {
		waitUntil(5*time.Second, nodes[i].name+": $SYS peers/up 1 after the cut", func() bool { return w[i].last("$SYS/broker/cluster/peers/up") == "1" })
	}
	// n3 says it is cut off, and serves its own clients among themselves.
	alone := n3.waitLog(marks[2], "node n3 is cut off from the majority (1 of 3 nodes reachable)", cutAt, 15*time.Second)
	waitUntil(5*time.Second, "n3: $SYS minority 1", func() bool { return w[2].last("$SYS/broker/cluster/minority") == "1" })
	waitUntil(5*time.Second, "n3: $SYS peers/up 0", func() bool { return w[2].last("$SYS/broker/cluster/peers/up") == "0" })
	twice3.publish(p+"/local", "among n3's clients", false)
	waitUntil(5*time.Second, "a message between two clients of n3 during the cut", func() bool { return w[2].has(p+"/local", "", false) })
	fmt.Printf("  cut: n1 and n2 declared n3 dead after %s and %s; n3 cut off after %s\n", secs(dead1), secs(dead2), secs(alone))

	// A new CONNECT on n3 is refused within seconds, v5 and v3 at once.
	var refusedIn [2]time.Duration
	var wg sync.WaitGroup
	for k, v := range []byte{codec.Version5, codec.Version311} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			c, err := n3.dial(opts(p+"-late-v"+strconv.Itoa(int(v)), v, 0))
			refusedIn[k] = time.Since(start)
			if err == nil {
				c.Close()
				failf("a v%d CONNECT on the cut-off n3 was accepted", v)
			}
			if !isUnavailable(err) || refusedIn[k] > 10*time.Second {
				failf("a v%d CONNECT on the cut-off n3: %v after %v, want CONNACK server unavailable (v5 0x88, v3 3) within 10 s", v, err, refusedIn[k])
			}
		}()
	}
	wg.Wait()
	fmt.Printf("  CONNECT on n3 refused: v5 0x88 after %s, v3 rc 3 after %s\n", secs(refusedIn[0]), secs(refusedIn[1]))

	// The majority goes on: a retained message, and the client id n3 holds.
	// While JetStream elects new leaders there, CONNECTs may be refused for
	// a while (README, Partitions): the clients connect again.
	pub2, ref2 := n2.dialRetry(opts(p+"-pub2", codec.Version5, 0), 40*time.Second)
	defer pub2.Close()
	pub2.publish(p+"/ret", "set while cut", true)
	o := opts(p+"-twice", codec.Version5, 600)
	o.CleanStart = false
	twice1, ref1 := n1.dialRetry(o, 40*time.Second)
	defer twice1.Close()
	if !twice1.Connack().SessionPresent {
		failf("%s resumed on n1 during the cut with session present 0: the majority did not take n3's session", o.ClientID)
	}
	fmt.Printf("  majority: retained set on n2, %s resumed on n1 (session present 1) while n3 still holds it (%d + %d CONNECTs refused first); cut for %s\n",
		o.ClientID, ref2, ref1, secs(time.Since(cutAt)))

	time.Sleep(time.Until(cutAt.Add(hold)))

	// Plug n3 back and measure each step of the convergence from then.
	marks = []int{n1.logMark(), n2.logMark(), n3.logMark()}
	healAt := time.Now()
	if err := c.undo(netw, 3); err != nil {
		failf("heal: %v", err)
	}
	var steps []string
	step := func(what string) { steps = append(steps, what+" "+secs(time.Since(healAt))) }
	n1.waitLog(marks[0], "node n3 up", healAt, 60*time.Second)
	n2.waitLog(marks[1], "node n3 up", healAt, 60*time.Second)
	n3.waitLog(marks[2], "is in the majority again", healAt, 60*time.Second)
	step("peers up")
	crossing(w[0], w[2], p+"/heal/to3", 60*time.Second)
	crossing(w[2], w[0], p+"/heal/to1", 60*time.Second)
	step("routes both ways")
	// Retained messages go to a new subscription: subscribe again until
	// the one set during the cut is there.
	waitUntil(60*time.Second, "the retained message set during the cut, on n3", func() bool {
		w[2].subscribe(p + "/ret")
		return waitBrief(func() bool { return w[2].has(p+"/ret", "set while cut", true) })
	})
	step("retained on n3")
	select {
	case <-twice3.Done():
	case <-time.After(60 * time.Second):
		failf("%s still connected to n3 60 s after the heal: two sessions for one client id", o.ClientID)
	}
	var de *client.DisconnectError
	if err := twice3.Err(); !errors.As(err, &de) || de.Code != codec.SessionTakenOver {
		failf("%s's connection to n3 ended with %v, want DISCONNECT 0x8E (session taken over)", o.ClientID, err)
	}
	step("one session")
	late, refN3 := n3.dialRetry(opts(p+"-after", codec.Version5, 0), 60*time.Second)
	late.Close()
	step("CONNECT on n3")
	converged := time.Since(healAt)

	// Still one connection for the client id, the majority's, and $SYS agrees.
	select {
	case <-twice1.Done():
		failf("%s's connection to n1 ended too: %v", o.ClientID, twice1.Err())
	default:
	}
	waitUntil(5*time.Second, "n3: $SYS minority 0", func() bool { return w[2].last("$SYS/broker/cluster/minority") == "0" })
	for i := range w {
		waitUntil(5*time.Second, nodes[i].name+": $SYS peers/up 2 after the heal", func() bool { return w[i].last("$SYS/broker/cluster/peers/up") == "2" })
	}
	fmt.Printf("  healed: %s (%d CONNECTs refused on n3 first): converged after %s\n", strings.Join(steps, ", "), refN3, secs(converged))
	return fmt.Sprintf("%s: dead after %s/%s, n3 cut off after %s, CONNECT refused after %s/%s, converged %s after the heal",
		c.name, secs(dead1), secs(dead2), secs(alone), secs(refusedIn[0]), secs(refusedIn[1]), secs(converged))
}

// crossing publishes on from until to receives one: what is published
// before the route is back is not kept for the other side.
func crossing(from, to *conn, topic string, d time.Duration) {
	start := time.Now()
	for k := 0; !to.has(topic, "", false); k++ {
		if time.Since(start) > d {
			failf("nothing published on %s reached %s within %v", topic, to.id, d)
		}
		from.publish(topic, strconv.Itoa(k), false)
		waitBrief(func() bool { return to.has(topic, "", false) })
	}
}

// waitBrief polls cond for up to 300 ms.
func waitBrief(cond func() bool) bool {
	for t := time.Now(); time.Since(t) < 300*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
