package main

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// persistConfig writes a config with persistence on and returns its path
// and the listener's address.
func persistConfig(t *testing.T, dir string, extra string) (string, string) {
	t.Helper()
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"+
		"persistence_location %s\nmax_queued_messages 0\nuser root\n%s", port, dir, extra))
	return conf, fmt.Sprintf("127.0.0.1:%d", port)
}

// stopMidge stops a broker started with startMidge (SIGTERM, or SIGKILL for a crash).
func stopMidge(t *testing.T, cmd *exec.Cmd, sig syscall.Signal) {
	t.Helper()
	if !stopProcess(cmd, sig) {
		t.Fatalf("midge did not stop on %v", sig)
	}
}

// waitToken waits for a paho operation and fails the test if it fails.
func waitToken(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: %v", what, tok.Error())
	}
}

func pahoClient(t *testing.T, addr, id string, clean bool, onMsg mqtt.MessageHandler) mqtt.Client {
	t.Helper()
	return pahoUserClient(t, addr, id, "", clean, onMsg)
}

// pahoUserClient is pahoClient with a username (none when empty).
func pahoUserClient(t *testing.T, addr, id, user string, clean bool, onMsg mqtt.MessageHandler) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetOrderMatters(true).SetUsername(user)
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	return c
}

// collector gathers messages a subscriber receives.
type collector struct {
	mu   sync.Mutex
	msgs []string // "topic payload qos"
	last time.Time
}

func (c *collector) handle(_ mqtt.Client, m mqtt.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, fmt.Sprintf("%s %s %d", m.Topic(), m.Payload(), m.Qos()))
	c.last = time.Now()
}

// quietFor waits until no message came for d (or 30s passed).
func (c *collector) quietFor(d time.Duration) []string {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		c.mu.Lock()
		idle := !c.last.IsZero() && time.Since(c.last) > d
		c.mu.Unlock()
		if idle {
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

// TestPersistRestart: a persistent session's subscriptions and queued QoS 1/2
// messages, and retained messages, are the same after a restart.
func TestPersistRestart(t *testing.T) {
	dir := t.TempDir()
	conf, addr := persistConfig(t, dir, "")
	cmd, _ := startMidge(t, addr, "-c", conf)

	sub := pahoClient(t, addr, "keeper", false, nil)
	waitToken(t, sub.Subscribe("p/#", 2, nil), "subscribe")
	sub.Disconnect(100)

	pub := pahoClient(t, addr, "pub", true, nil)
	for i := 0; i < 10; i++ {
		for _, q := range []byte{1, 2} {
			tok := pub.Publish("p/x", q, false, fmt.Sprintf("m%d-q%d", i, q))
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
		}
	}
	waitToken(t, pub.Publish("r/keep", 1, true, "retained"), "publish retained")
	pub.Disconnect(100)

	stopMidge(t, cmd, syscall.SIGTERM)
	startMidge(t, addr, "-c", conf)

	col := &collector{}
	sub = pahoClient(t, addr, "keeper", false, col.handle)
	defer sub.Disconnect(100)
	got := col.quietFor(500 * time.Millisecond)
	var want []string
	for i := 0; i < 10; i++ {
		want = append(want, fmt.Sprintf("p/x m%d-q1 1", i), fmt.Sprintf("p/x m%d-q2 2", i))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("after restart the persistent session got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	rcol := &collector{}
	r := pahoClient(t, addr, "late", true, nil)
	defer r.Disconnect(100)
	waitToken(t, r.Subscribe("r/#", 1, rcol.handle), "subscribe")
	if got := rcol.quietFor(300 * time.Millisecond); len(got) != 1 || got[0] != "r/keep retained 1" {
		t.Errorf("retained after restart: %q", got)
	}
}

// TestPersistCrash kills the broker with SIGKILL at random moments while
// several publishers send QoS 1 and QoS 2 messages, restarts it on the same
// store, and checks that every message whose PUBACK or PUBCOMP a publisher
// received reaches the persistent subscriber, QoS 2 exactly once.
func TestPersistCrash(t *testing.T) {
	dir := t.TempDir()
	conf, addr := persistConfig(t, dir, "")
	cmd, _ := startMidge(t, addr, "-c", conf)

	sub := pahoClient(t, addr, "crash-sub", false, nil)
	waitToken(t, sub.Subscribe("c/#", 2, nil), "subscribe")
	sub.Disconnect(100)

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	var mu sync.Mutex
	acked := map[string]byte{} // payload → qos, for messages the broker acknowledged
	const rounds, publishers = 4, 3
	for round := 0; round < rounds; round++ {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).
					SetClientID(fmt.Sprintf("crash-pub-%d-%d", round, p)).SetAutoReconnect(false).
					SetConnectRetry(false).SetConnectTimeout(2 * time.Second).SetWriteTimeout(2 * time.Second)
				c := mqtt.NewClient(o)
				if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					return
				}
				defer c.Disconnect(0)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					q := byte(1 + i%2)
					payload := fmt.Sprintf("r%d-p%d-%d-q%d", round, p, i, q)
					tok := c.Publish("c/data", q, false, payload)
					if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
						return // the broker died: this one was not acknowledged
					}
					mu.Lock()
					acked[payload] = q
					mu.Unlock()
				}
			}(p)
		}
		time.Sleep(time.Duration(150+rng.Intn(350)) * time.Millisecond)
		stopMidge(t, cmd, syscall.SIGKILL)
		close(stop)
		wg.Wait()
		cmd, _ = startMidge(t, addr, "-c", conf)
	}
	mu.Lock()
	total := len(acked)
	mu.Unlock()
	if total == 0 {
		t.Fatal("no message was acknowledged: the publishers never ran")
	}

	col := &collector{}
	sub = pahoClient(t, addr, "crash-sub", false, col.handle)
	defer sub.Disconnect(100)
	got := col.quietFor(time.Second)
	seen := map[string]int{}
	for _, m := range got {
		f := strings.Fields(m)
		if len(f) >= 2 {
			seen[f[1]]++
		}
	}
	var missing, dup []string
	for payload, q := range acked {
		switch n := seen[payload]; {
		case n == 0:
			missing = append(missing, payload)
		case n > 1 && q == 2:
			dup = append(dup, payload)
		}
	}
	sort.Strings(missing)
	sort.Strings(dup)
	t.Logf("%d messages acknowledged over %d crashes, %d delivered", total, rounds, len(got))
	if len(missing) > 0 {
		t.Errorf("%d acknowledged messages lost, e.g. %q", len(missing), missing[:min(5, len(missing))])
	}
	if len(dup) > 0 {
		t.Errorf("%d QoS 2 messages delivered more than once, e.g. %q", len(dup), dup[:min(5, len(dup))])
	}
}

// TestPersistSysTotals: the counters $SYS reports as totals go on from
// their stored values after a restart.
func TestPersistSysTotals(t *testing.T) {
	dir := t.TempDir()
	conf, addr := persistConfig(t, dir, "")
	cmd, _ := startMidge(t, addr, "-c", conf)
	const published = 25
	pub := pahoClient(t, addr, "totals-pub", true, nil)
	for i := 0; i < published; i++ {
		waitToken(t, pub.Publish("totals/x", 1, false, "m"), "publish")
	}
	pub.Disconnect(100)
	stopMidge(t, cmd, syscall.SIGTERM)

	startMidge(t, addr, "-c", conf)
	col := &collector{}
	sub := pahoClient(t, addr, "totals-sub", true, nil)
	defer sub.Disconnect(100)
	waitToken(t, sub.Subscribe("$SYS/broker/publish/messages/received", 0, col.handle), "subscribe")
	got := col.quietFor(300 * time.Millisecond)
	if len(got) == 0 {
		t.Fatal("no $SYS/broker/publish/messages/received after the restart")
	}
	var n int
	if _, err := fmt.Sscanf(got[0], "$SYS/broker/publish/messages/received %d", &n); err != nil || n < published {
		t.Fatalf("after a restart publish/messages/received is %q, want at least %d (the total before)", got[0], published)
	}
}

// TestPersistACLAfterRestart: messages queued for a restored persistent
// session while its client is away are checked against that client's read
// ACL (the store keeps its username), so a restart lets nothing through that
// the ACL forbids.
func TestPersistACLAfterRestart(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, "user alice\ntopic read t/ok\ntopic write t/#\n\nuser pub\ntopic write t/#\n")
	conf, addr := persistConfig(t, dir, "acl_file "+acl+"\n")
	cmd, _ := startMidge(t, addr, "-c", conf)

	connect := func(id, user string, onMsg mqtt.MessageHandler) mqtt.Client {
		return pahoUserClient(t, addr, id, user, false, onMsg)
	}
	alice := connect("alice-dev", "alice", nil)
	waitToken(t, alice.Subscribe("t/#", 1, nil), "subscribe")
	alice.Disconnect(100)
	stopMidge(t, cmd, syscall.SIGTERM)

	startMidge(t, addr, "-c", conf)
	pub := connect("publisher", "pub", nil)
	for _, topic := range []string{"t/secret", "t/ok"} {
		waitToken(t, pub.Publish(topic, 1, false, "m"), "publish "+topic)
	}
	pub.Disconnect(100)

	col := &collector{}
	alice = connect("alice-dev", "alice", col.handle)
	defer alice.Disconnect(100)
	if got := col.quietFor(500 * time.Millisecond); strings.Join(got, ",") != "t/ok m 1" {
		t.Errorf("after the restart alice got %q, want only t/ok (t/secret is not hers to read)", got)
	}
}

// TestPersistFileStandsForStore: persistence_file is a small file standing
// for the store (in the directory beside it, ".d" added): removing it, as one
// resets mosquitto and as mosquitto's tests clean up, discards the store;
// a file that is not midge's (a mosquitto database) is refused.
func TestPersistFileStandsForStore(t *testing.T) {
	dir := t.TempDir()
	conf, addr := persistConfig(t, dir, "persistence_file state.db\n")
	cmd, _ := startMidge(t, addr, "-c", conf)
	c := pahoClient(t, addr, "keeper", false, nil)
	waitToken(t, c.Subscribe("k/#", 1, nil), "subscribe")
	c.Disconnect(100)
	stopMidge(t, cmd, syscall.SIGTERM)
	file := filepath.Join(dir, "state.db")
	if fi, err := os.Stat(file); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("%s: %v, want a regular file", file, err)
	}
	if fi, err := os.Stat(file + ".d"); err != nil || !fi.IsDir() {
		t.Fatalf("%s.d: %v, want the store's directory", file, err)
	}

	// Kept across a restart while the file is there...
	cmd, _ = startMidge(t, addr, "-c", conf)
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("keeper").SetCleanSession(false)
	c = mqtt.NewClient(o)
	tok := c.Connect()
	waitToken(t, tok, "connect")
	if !tok.(*mqtt.ConnectToken).SessionPresent() {
		t.Fatal("session lost across a restart")
	}
	c.Disconnect(100)
	stopMidge(t, cmd, syscall.SIGTERM)

	// ...and gone once it is removed.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	cmd, _ = startMidge(t, addr, "-c", conf)
	c = mqtt.NewClient(o)
	tok = c.Connect()
	waitToken(t, tok, "connect")
	if tok.(*mqtt.ConnectToken).SessionPresent() {
		t.Fatal("session present after its store's file was removed")
	}
	c.Disconnect(100)
	stopMidge(t, cmd, syscall.SIGTERM)

	writeFile(t, file, "not a midge store")
	out, err := exec.Command(midgeBin, "-c", conf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a midge store") {
		t.Fatalf("midge with a foreign %s: %v\n%s", file, err, out)
	}
}
