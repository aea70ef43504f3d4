//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The network: a bridge in a "hub" namespace and one namespace per node,
// joined to it by a veth pair (eth0 in the node, nK in the hub). Nothing
// is made in the host's namespace, so the host's network is untouched and
// the 10.213.0.0/24 addresses exist only inside these namespaces; another
// run has its own namespaces (their names carry the pid).
const namePrefix = "midge-chaos-"

type network struct{ prefix string }

func newNetwork() *network { return &network{prefix: namePrefix + strconv.Itoa(os.Getpid()) + "-"} }

func (n *network) hub() string       { return n.prefix + "hub" }
func (n *network) ns(i int) string   { return n.prefix + "n" + strconv.Itoa(i) }
func (n *network) port(i int) string { return "n" + strconv.Itoa(i) } // in the hub
func nodeAddr(i int) string          { return "10.213.0." + strconv.Itoa(i) }
func (n *network) names(k int) []string {
	s := []string{}
	for i := 1; i <= k; i++ {
		s = append(s, n.ns(i))
	}
	return append(s, n.hub())
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// up makes the hub with its bridge and k nodes' namespaces.
func (n *network) up(k int) error {
	hub := n.hub()
	steps := [][]string{
		{"netns", "add", hub},
		{"-n", hub, "link", "add", "br0", "type", "bridge"}, // STP off: a port forwards at once
		{"-n", hub, "link", "set", "br0", "up"},
	}
	for i := 1; i <= k; i++ {
		ns := n.ns(i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"-n", hub, "link", "add", n.port(i), "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", hub, "link", "set", n.port(i), "master", "br0", "up"},
			[]string{"-n", ns, "addr", "add", nodeAddr(i) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"}, // a node's own clients reach it through lo
		)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// A cut of node i's link, and its undoing.
type cut struct {
	name, how string
	apply     func(n *network, i int) error
	undo      func(n *network, i int) error
}

var cuts = []cut{
	{"unplug", "its veth port set down in the hub: no carrier on the node's side",
		func(n *network, i int) error { return ip("-n", n.hub(), "link", "set", n.port(i), "down") },
		func(n *network, i int) error { return ip("-n", n.hub(), "link", "set", n.port(i), "up") }},
	// Carrier stays up and nothing is reset or refused: frames just vanish
	// (this kernel has no netem, so the bridge port is disabled instead).
	{"blackhole", "its bridge port disabled in the hub: link up, every frame dropped",
		func(n *network, i int) error { return portState(n, i, "0") },
		func(n *network, i int) error { return portState(n, i, "3") }},
}

func portState(n *network, i int, state string) error {
	return ip("netns", "exec", n.hub(), "bridge", "link", "set", "dev", n.port(i), "state", state)
}

// remove ends the processes left in the namespaces and deletes them.
func remove(names []string) {
	for _, ns := range names {
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		ip("netns", "del", ns)
	}
}

var runName = regexp.MustCompile(`^` + namePrefix + `(\d+)-`)

// removeLeftovers deletes the namespaces of earlier runs whose process is
// gone (a run killed with SIGKILL cannot clean up after itself); those of
// a run still going are left alone.
func removeLeftovers() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	self, _ := os.ReadFile("/proc/self/comm")
	var stale []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := runName.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + m[1] + "/comm"); err == nil && string(comm) == string(self) {
			continue // that run is still going
		}
		stale = append(stale, f[0])
	}
	if len(stale) > 0 {
		fmt.Printf("removing %d namespaces left by an earlier run: %s\n", len(stale), strings.Join(stale, " "))
		remove(stale)
	}
}

// hostNS is the host's network namespace, opened before any thread moves.
var hostNS = func() int {
	fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	return fd
}()

// inNetns runs f on an OS thread moved into the namespace ns, so that the
// sockets f opens are that namespace's: a socket stays in the namespace it
// was made in, whichever thread uses it afterwards. Threads the runtime
// starts meanwhile come from a clean template thread, not this one.
func inNetns(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return // the thread ends with the goroutine (still locked)
		}
		errc <- f()
		if unix.Setns(hostNS, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}
