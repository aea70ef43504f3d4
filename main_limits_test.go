package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// mosquittoSub runs mosquitto_sub -d with args and returns the received
// messages ("topic payload" with -v) once the SUBACK has come back; the
// channel closes when mosquitto_sub exits.
func mosquittoSub(t *testing.T, args ...string) (<-chan string, *exec.Cmd) {
	t.Helper()
	// stdbuf: mosquitto_sub does not flush its -d lines on a pipe.
	cmd := exec.Command("stdbuf", append([]string{"-oL", "mosquitto_sub", "-d"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan struct{})
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		subscribed := false
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "Subscribed (mid"):
				if !subscribed {
					subscribed = true
					close(ready)
				}
			case strings.HasPrefix(l, "Client "): // -d debug lines
			default:
				lines <- l
			}
		}
		if !subscribed {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("mosquitto_sub %v: no SUBACK", args)
	}
	return lines, cmd
}

// mosquittoPub runs mosquitto_pub and fails the test if it fails.
func mosquittoPub(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mosquitto_pub", args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %v: %v %s", args, err, out)
	}
}

// expectLine waits for the next message line.
func expectLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("subscriber ended; want %q", want)
		}
		if l != want {
			t.Fatalf("got %q, want %q", l, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q in 10s", want)
	}
}

func mosquittoPasswd(t *testing.T, file string, create bool, user, pass string) {
	t.Helper()
	args := []string{"-b", file, user, pass}
	if create {
		args = append([]string{"-c"}, args...)
	}
	if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
}

// TestPerListenerSettings: with per_listener_settings true, each listener
// has its own security; both share one broker's topics.
func TestPerListenerSettings(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	mosquittoPasswd(t, pw, true, "alice", "secret")
	open, closed := freePort(t), freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("per_listener_settings true\n"+
		"listener %d 127.0.0.1\nallow_anonymous true\n"+
		"listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\n", open, closed, pw))
	startMidge(t, fmt.Sprintf("127.0.0.1:%d", open), "-c", conf)
	po, pc := strconv.Itoa(open), strconv.Itoa(closed)

	lines, _ := mosquittoSub(t, "-p", po, "-t", "pl/#", "-v") // anonymous, on the open listener
	out, err := exec.Command("mosquitto_pub", "-p", pc, "-t", "pl/x", "-m", "anon").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not authorised") {
		t.Errorf("anonymous on the closed listener: err=%v out=%q, want not authorised", err, out)
	}
	out, err = exec.Command("mosquitto_pub", "-p", pc, "-u", "alice", "-P", "wrong", "-t", "pl/x", "-m", "bad").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not authorised") { // mosquitto's code 5
		t.Errorf("wrong password on the closed listener: err=%v out=%q", err, out)
	}
	mosquittoPub(t, "-p", pc, "-u", "alice", "-P", "secret", "-t", "pl/x", "-m", "from-closed", "-q", "1")
	expectLine(t, lines, "pl/x from-closed")
	mosquittoPub(t, "-p", po, "-t", "pl/y", "-m", "from-open", "-q", "1")
	expectLine(t, lines, "pl/y from-open")
}

// TestSighupReloadKeepsClients: SIGHUP re-reads the password file (a user
// added after start can log in) and a connected client stays connected.
func TestSighupReloadKeepsClients(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	mosquittoPasswd(t, pw, true, "alice", "secret")
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	// user root: the password file is in a directory only root may read.
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\npassword_file %s\nuser root\n", port, pw))
	cmd, logs := startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-c", conf)
	p := strconv.Itoa(port)

	lines, _ := mosquittoSub(t, "-p", p, "-i", "hupsub", "-u", "alice", "-P", "secret", "-t", "hup/#", "-v", "-q", "1")
	mosquittoPasswd(t, pw, false, "bob", "hunter2")
	if err := exec.Command("mosquitto_pub", "-p", p, "-u", "bob", "-P", "hunter2", "-t", "hup/x", "-m", "early").Run(); err == nil {
		t.Fatal("bob logged in before the reload")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "Reloading config.") })
	waitFor(t, func() bool {
		return exec.Command("mosquitto_pub", "-p", p, "-u", "bob", "-P", "hunter2", "-t", "hup/x", "-m", "late", "-q", "1").Run() == nil
	})
	expectLine(t, lines, "hup/x late")
	// mosquitto_sub would reconnect if dropped: the log shows one connection.
	text := logs.String()
	if n := strings.Count(text, " as hupsub "); n != 1 || strings.Contains(text, "Client hupsub ") {
		t.Fatalf("alice's subscriber was dropped by the reload (%d connects):\n%s", n, text)
	}
}

// TestSysAndMetricsAfterWorkload: after a known workload the $SYS topics
// (sys_interval 1) and a Prometheus scrape of metrics_listener, parsed with
// Prometheus's text parser, show the same exact values.
func TestSysAndMetricsAfterWorkload(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	port, mport := freePort(t), freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nsys_interval 1\nmetrics_listener 127.0.0.1:%d\n", port, mport))
	_, logs := startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-c", conf)
	p := strconv.Itoa(port)

	// A persistent subscriber takes three messages and leaves; two more are
	// queued for it while it is away.
	lines, keeper := mosquittoSub(t, "-p", p, "-i", "keeper", "-c", "-q", "1", "-t", "w/#", "-v", "-C", "3")
	for i := 1; i <= 3; i++ {
		mosquittoPub(t, "-p", p, "-t", fmt.Sprintf("w/%d", i), "-m", "hello", "-q", "1")
	}
	for i := 1; i <= 3; i++ {
		expectLine(t, lines, fmt.Sprintf("w/%d hello", i))
	}
	_ = keeper.Wait()
	waitFor(t, func() bool { return strings.Contains(logs.String(), "Client keeper disconnected.") })
	mosquittoPub(t, "-p", p, "-t", "w/4", "-m", "away!", "-q", "1")
	mosquittoPub(t, "-p", p, "-t", "w/5", "-m", "away!", "-q", "1")

	// The $SYS reader is the only client connected; keeper's session stays.
	want := map[string]string{
		"$SYS/broker/clients/connected":         "1",
		"$SYS/broker/clients/active":            "1",
		"$SYS/broker/clients/disconnected":      "1",
		"$SYS/broker/clients/inactive":          "1",
		"$SYS/broker/clients/total":             "2",
		"$SYS/broker/clients/expired":           "0",
		"$SYS/broker/subscriptions/count":       "2",
		"$SYS/broker/publish/messages/received": "5",
		"$SYS/broker/publish/bytes/received":    "25",
		"$SYS/broker/publish/messages/dropped":  "0",
		"$SYS/broker/version":                   "midge version " + version,
	}
	// Published with values this test cannot pin down (the $SYS reader's
	// own traffic counts, and $SYS topics are retained messages too).
	for _, topic := range []string{"uptime", "clients/maximum", "messages/received", "messages/sent",
		"messages/stored", "store/messages/count", "retained messages/count", "heap/current",
		"publish/messages/sent", "publish/bytes/sent", "bytes/received", "bytes/sent"} {
		want["$SYS/broker/"+topic] = ""
	}
	for _, load := range []string{"messages/received", "messages/sent", "publish/received", "publish/sent",
		"publish/dropped", "bytes/received", "bytes/sent", "connections", "sockets"} {
		for _, w := range []string{"1min", "5min", "15min"} {
			want["$SYS/broker/load/"+load+"/"+w] = ""
		}
	}
	sys, _ := mosquittoSub(t, "-p", p, "-t", "$SYS/broker/#", "-v")
	got := map[string]string{}
	matches := func() bool {
		for topic, v := range want {
			g, ok := got[topic]
			if !ok || (v != "" && g != v) {
				return false
			}
		}
		return true
	}
	deadline := time.After(10 * time.Second)
	for !matches() {
		select {
		case l, ok := <-sys:
			if !ok {
				t.Fatal("$SYS subscriber ended")
			}
			topic, v, _ := strings.Cut(l, " ")
			if topic == "$SYS/broker/retained" { // mosquitto's topic name has a space
				topic, v, _ = strings.Cut(l[len(topic)+1:], " ")
				topic = "$SYS/broker/retained " + topic
			}
			got[topic] = v
		case <-deadline:
			for topic, v := range want {
				if g, ok := got[topic]; !ok || (v != "" && g != v) {
					t.Errorf("%s = %q (seen: %v), want %q", topic, g, ok, v)
				}
			}
			t.FailNow()
		}
	}
	if !regexp.MustCompile(`^\d+ seconds$`).MatchString(got["$SYS/broker/uptime"]) {
		t.Errorf("uptime %q, want mosquitto's \"N seconds\"", got["$SYS/broker/uptime"])
	}

	// The same counters through Prometheus, read at scrape time.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var parser expfmt.TextParser
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	for name, v := range map[string]float64{
		"midge_clients_connected":               1,
		"midge_clients_sessions":                2,
		"midge_subscriptions":                   2,
		"midge_publish_messages_received_total": 5,
		"midge_publish_bytes_received_total":    25,
		"midge_publish_messages_dropped_total":  0,
	} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 {
			t.Errorf("%s missing", name)
			continue
		}
		g := f.Metric[0].GetGauge().GetValue() + f.Metric[0].GetCounter().GetValue()
		if f.GetType() != dto.MetricType_GAUGE && f.GetType() != dto.MetricType_COUNTER || g != v {
			t.Errorf("%s = %v (%v), want %v", name, g, f.GetType(), v)
		}
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", mport)); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/debug/pprof/: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
}

// TestLogConnectionMessages: connections are logged as mosquitto logs them,
// and a failed login is logged without the password.
func TestLogConnectionMessages(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	mosquittoPasswd(t, pw, true, "alice", "Pa55-secret")
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\npassword_file %s\nlog_dest stdout\n", port, pw))
	_, logs := startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-c", conf)
	p := strconv.Itoa(port)

	tests := []struct {
		args []string
		want string // a regexp for the whole line
	}{
		{[]string{"-i", "log311", "-k", "60", "-u", "alice", "-P", "Pa55-secret"},
			`New client connected from 127\.0\.0\.1:\d+ as log311 \(p2, c1, k60, u'alice'\)\.`},
		{[]string{"-i", "log5", "-k", "30", "-V", "5", "-u", "alice", "-P", "Pa55-secret"},
			`New client connected from 127\.0\.0\.1:\d+ as log5 \(p5, c1, k30, u'alice'\)\.`},
		{[]string{"-i", "log31", "-k", "15", "-V", "31", "-u", "alice", "-P", "Pa55-secret"},
			`New client connected from 127\.0\.0\.1:\d+ as log31 \(p1, c1, k15, u'alice'\)\.`},
	}
	for _, tt := range tests {
		mosquittoPub(t, append([]string{"-p", p, "-t", "log/x", "-m", "m"}, tt.args...)...)
		re := regexp.MustCompile(`(?m)^\d+: ` + tt.want + `$`) // log_timestamp is on by default
		waitFor(t, func() bool { return re.MatchString(logs.String()) })
	}

	for _, v := range []string{"311", "5"} {
		id := "badlogin" + v
		out, err := exec.Command("mosquitto_pub", "-p", p, "-V", v, "-i", id, "-u", "alice", "-P", "Wr0ng-Pa55w0rd",
			"-t", "log/x", "-m", "m").CombinedOutput()
		if err == nil {
			t.Fatalf("wrong password accepted: %s", out)
		}
		waitFor(t, func() bool { return strings.Contains(logs.String(), "Client "+id+" from 127.0.0.1:") })
	}
	text := logs.String()
	if !strings.Contains(text, "bad username or password") {
		t.Errorf("failed login not logged:\n%s", text)
	}
	for _, secret := range []string{"Wr0ng-Pa55w0rd", "Pa55-secret"} {
		if strings.Contains(text, secret) {
			t.Errorf("the log contains the password %q:\n%s", secret, text)
		}
	}
}

// TestSighupReloadACLQueued: messages queued for an offline persistent
// session are checked against the ACL file as it is when the client comes
// back, so a SIGHUP that revokes a topic also stops what was queued on it
// (mosquitto checks a queue on reconnect; issue 21, 09-acl-change).
func TestSighupReloadACLQueued(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	mosquittoPasswd(t, pw, true, "alice", "secret")
	writeFile(t, acl, "user alice\ntopic readwrite q/one\ntopic readwrite q/two\n")
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nuser root\npassword_file %s\nacl_file %s\n", port, pw, acl))
	cmd, logs := startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-c", conf)
	p := strconv.Itoa(port)
	user := []string{"-p", p, "-u", "alice", "-P", "secret", "-q", "1"}

	// A persistent session subscribed to both topics goes offline.
	if out, err := exec.Command("mosquitto_sub", append(user, "-c", "-i", "aclq", "-t", "q/one", "-t", "q/two", "-E")...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_sub -E: %v %s", err, out)
	}
	mosquittoPub(t, append(user, "-t", "q/one", "-m", "m1")...)
	mosquittoPub(t, append(user, "-t", "q/two", "-m", "m2")...)

	writeFile(t, acl, "user alice\ntopic readwrite q/one\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "Reloading config.") })

	// Back online: m1 arrives, m2 (no longer readable) does not; m3 marks
	// the end of what was queued.
	lines, _ := mosquittoSub(t, append(user, "-c", "-i", "aclq", "-t", "q/one", "-v")...)
	expectLine(t, lines, "q/one m1")
	mosquittoPub(t, append(user, "-t", "q/one", "-m", "m3")...)
	expectLine(t, lines, "q/one m3")
}
