//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// node is one midge process in its namespace, its log in a file.
type node struct {
	i       int
	name    string
	ns, dir string
	cmd     *exec.Cmd
	exited  chan struct{}
}

func (n *node) addr() string    { return nodeAddr(n.i) + ":1883" }
func (n *node) logPath() string { return filepath.Join(n.dir, "midge.log") }

func (n *node) start(bin string, size int) error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	var peers []string
	for i := 1; i <= size; i++ {
		peers = append(peers, nodeAddr(i)+":6222")
	}
	// Fixed ports are safe: each namespace has its own. `user root`: the
	// cluster's files stay writable after the broker drops root (README).
	conf := fmt.Sprintf("listener 1883 %s\nallow_anonymous true\nsys_interval 1\nuser root\npersistence_location %s\n"+
		"cluster_name chaos\ncluster_node_name %s\ncluster_listen %s:6222\ncluster_peers %s\n",
		nodeAddr(n.i), n.dir, n.name, nodeAddr(n.i), strings.Join(peers, " "))
	path := filepath.Join(n.dir, "midge.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	log, err := os.Create(n.logPath())
	if err != nil {
		return err
	}
	n.cmd = exec.Command("ip", "netns", "exec", n.ns, bin, "-c", path) // ip execs midge: same pid
	n.cmd.Stdout, n.cmd.Stderr = log, log
	if err := n.cmd.Start(); err != nil {
		return err
	}
	n.exited = make(chan struct{})
	go func() {
		err := n.cmd.Wait()
		close(n.exited)
		if !ending.Load() {
			failf("%s exited on its own: %v", n.name, err)
		}
	}()
	return nil
}

func (n *node) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}

func (n *node) log() string {
	b, _ := os.ReadFile(n.logPath())
	return string(b)
}

// logMark is where the log ends now: waitLog looks only past it.
func (n *node) logMark() int { return len(n.log()) }

// waitLog waits until a line past mark contains s, and returns how long
// after since that was.
func (n *node) waitLog(mark int, s string, since time.Time, d time.Duration) time.Duration {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l := n.log(); len(l) > mark && strings.Contains(l[mark:], s) {
			return time.Since(since)
		}
		time.Sleep(20 * time.Millisecond)
	}
	failf("%s: no %q in its log within %v", n.name, s, d)
	return 0
}

// conn is a real MQTT client of a node, its socket made in the node's
// namespace; it keeps what it receives.
type conn struct {
	*client.Client
	id   string
	mu   sync.Mutex
	msgs []client.Message
}

func (n *node) dial(o client.Options) (*conn, error) {
	o.Addr = n.addr()
	c := &conn{Client: client.New(o), id: o.ClientID}
	c.OnMessage = func(m *client.Message) {
		c.mu.Lock()
		c.msgs = append(c.msgs, client.Message{Topic: append([]byte(nil), m.Topic...), Payload: append([]byte(nil), m.Payload...), Retain: m.Retain})
		c.mu.Unlock()
	}
	err := inNetns(n.ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return c.Connect(ctx)
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func opts(id string, v byte, expiry uint32) client.Options {
	o := client.Options{ClientID: id, Version: v, CleanStart: true, MaxInflight: 100}
	if expiry > 0 {
		o.Props.SessionExpiry = expiry
		o.Props.Set(codec.PropSessionExpiry)
	}
	return o
}

func (n *node) mustDial(o client.Options) *conn {
	c, err := n.dial(o)
	if err != nil {
		failf("connect %s to %s: %v", o.ClientID, n.name, err)
	}
	return c
}

// dialRetry connects, again while the CONNECT is refused with "server
// unavailable" (JetStream electing leaders, or the node catching up).
func (n *node) dialRetry(o client.Options, d time.Duration) (*conn, int) {
	start := time.Now()
	for refusals := 0; ; refusals++ {
		c, err := n.dial(o)
		if err == nil {
			return c, refusals
		}
		if !isUnavailable(err) || time.Since(start) > d {
			failf("connect %s to %s: %v (after %d refusals in %v)", o.ClientID, n.name, err, refusals, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func isUnavailable(err error) bool {
	var ce *client.ConnackError
	return errors.As(err, &ce) && (ce.Version == codec.Version5 && ce.Code == codec.ServerUnavailable ||
		ce.Version != codec.Version5 && ce.Code == codec.ConnRefusedServerUnavailable)
}

func (c *conn) subscribe(filters ...string) {
	var subs []codec.Subscription
	for _, f := range filters {
		subs = append(subs, codec.Subscription{Filter: []byte(f), QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, nil, subs...); err != nil {
		failf("%s: subscribe %v: %v", c.id, filters, err)
	}
}

func (c *conn) publish(topic, payload string, retain bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Publish(ctx, &client.Message{Topic: []byte(topic), Payload: []byte(payload), QoS: 1, Retain: retain}); err != nil {
		failf("%s: publish %s: %v", c.id, topic, err)
	}
}

// has reports whether c received payload on topic (any payload if "";
// only retained ones if retained).
func (c *conn) has(topic, payload string, retained bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		if string(m.Topic) == topic && (payload == "" || string(m.Payload) == payload) && (m.Retain || !retained) {
			return true
		}
	}
	return false
}

// last is the latest payload c received on topic.
func (c *conn) last(topic string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.msgs) - 1; i >= 0; i-- {
		if string(c.msgs[i].Topic) == topic {
			return string(c.msgs[i].Payload)
		}
	}
	return ""
}

// waitUntil polls cond every 20 ms, failing with what after d.
func waitUntil(d time.Duration, what string, cond func() bool) time.Duration {
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			failf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}
