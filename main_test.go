package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/config"
)

// midgeBin is the broker binary built once for the tests in this file.
var midgeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "midge-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	midgeBin = filepath.Join(dir, "midge")
	out, err := exec.Command("go", "build", "-o", midgeBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// selfConnected reports a TCP self-connection: dialing a local port nothing
// listens on yet can get that very port as the source, and the connection
// then "succeeds" with no broker behind it (TestBridgeStartTypes/lazy saw
// connection refused once the broker had been judged listening).
func selfConnected(c net.Conn) bool {
	return c.LocalAddr().String() == c.RemoteAddr().String()
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startMidge runs the broker binary with args and waits until addr accepts.
func startMidge(t *testing.T, addr string, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	out := &lockedBuffer{}
	cmd := exec.Command(midgeBin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !stopProcess(cmd, syscall.SIGTERM) {
			t.Errorf("midge did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("midge output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil && !selfConnected(c) {
			c.Close()
			return cmd, out
		} else if err == nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("midge did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopProcess sends sig and waits up to 10 s for the process to end (then
// kills it). It reports whether the process stopped by itself; a process
// already waited for counts as stopped.
func stopProcess(cmd *exec.Cmd, sig syscall.Signal) bool {
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		return false
	}
}

func needMosquittoClients(t *testing.T) {
	t.Helper()
	for _, b := range []string{"mosquitto_pub", "mosquitto_sub", "mosquitto_passwd"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: run `make deps` (installs Debian's mosquitto and mosquitto-clients)", b)
		}
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestConfigAuthACL starts `midge -c` with a mosquitto.conf, a password file
// written by mosquitto_passwd and an ACL file, and drives it with Debian's
// mosquitto_pub and mosquitto_sub.
func TestConfigAuthACL(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pwFile, "alice", "secret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	if out, err := exec.Command("mosquitto_passwd", "-b", pwFile, "bob", "hunter2").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v %s", err, out)
	}
	aclFile := filepath.Join(dir, "acl")
	writeFile(t, aclFile, "user alice\ntopic readwrite alice/#\ntopic read public/#\n\nuser bob\ntopic write public/#\n")
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("# test\nlistener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\n",
		port, pwFile, aclFile))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	startMidge(t, addr, "-c", conf)
	p := fmt.Sprint(port)

	// Anonymous: refused (allow_anonymous false): mosquitto_pub exits non-zero.
	out, err := exec.Command("mosquitto_pub", "-p", p, "-t", "public/x", "-m", "m").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not authorised") {
		t.Errorf("anonymous publish: err=%v out=%q, want refused (not authorised)", err, out)
	}
	// Wrong password: CONNACK 5 (not authorised), as mosquitto answers.
	out, err = exec.Command("mosquitto_pub", "-p", p, "-u", "alice", "-P", "wrong", "-t", "public/x", "-m", "m").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not authorised") {
		t.Errorf("wrong password: err=%v out=%q, want refused (not authorised)", err, out)
	}

	// alice subscribes to public/# and alice/#; bob may only write public/#.
	sub := exec.Command("mosquitto_sub", "-p", p, "-u", "alice", "-P", "secret", "-t", "public/#", "-t", "alice/#",
		"-v", "-C", "2", "-W", "10")
	stdout, _ := sub.StdoutPipe()
	sub.Stderr = os.Stderr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Wait until the subscription is in place: the probe is retained, so
	// alice sees it exactly once whether it lands before or after her
	// SUBSCRIBE.
	waitFor(t, func() bool {
		return exec.Command("mosquitto_pub", "-p", p, "-u", "alice", "-P", "secret", "-t", "alice/probe", "-m", "p", "-r").Run() == nil
	})
	first := <-lines
	if first != "alice/probe p" {
		t.Fatalf("first line %q, want alice/probe p", first)
	}
	// bob writes to alice/x: denied by the ACL (v3: accepted and dropped).
	if err := exec.Command("mosquitto_pub", "-p", p, "-u", "bob", "-P", "hunter2", "-t", "alice/x", "-m", "denied", "-q", "1").Run(); err != nil {
		t.Fatalf("bob publish: %v", err)
	}
	// bob writes to public/news: allowed, and alice may read it.
	if err := exec.Command("mosquitto_pub", "-p", p, "-u", "bob", "-P", "hunter2", "-t", "public/news", "-m", "hello", "-q", "1").Run(); err != nil {
		t.Fatalf("bob publish: %v", err)
	}
	select {
	case l := <-lines:
		if l != "public/news hello" {
			t.Errorf("got %q, want public/news hello (bob's alice/x must have been dropped)", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alice did not receive public/news")
	}
	_ = sub.Wait()
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	waitWithin(t, 10*time.Second, f)
}

// waitWithin polls f until it holds, failing the test after d.
func waitWithin(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConfigErrors: a bad config line names the file, line and key, and the
// broker refuses to start.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ name, text, want string }{
		{"unknown key", "listener 1883\nno_such_key 1\n", `midge.conf:2: unknown configuration key "no_such_key"`},
		{"bad number", "max_queued_messages lots\n", "midge.conf:1: max_queued_messages"},
		{"missing password file", "listener 1883\npassword_file /nonexistent/pw\n", "/nonexistent/pw"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := filepath.Join(dir, "midge.conf")
			writeFile(t, conf, c.text)
			out, err := exec.Command(midgeBin, "-c", conf).CombinedOutput()
			if err == nil {
				t.Fatalf("midge started with a bad config:\n%s", out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("output %q does not name %q", out, c.want)
			}
		})
	}
}

// TestPortFlag: without a config file, -p listens on loopback and allows
// anonymous clients, as mosquitto 2 does.
func TestPortFlag(t *testing.T) {
	needMosquittoClients(t)
	port := freePort(t)
	startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-p", fmt.Sprint(port))
	out, err := exec.Command("mosquitto_pub", "-p", fmt.Sprint(port), "-t", "t", "-m", "anonymous ok").CombinedOutput()
	if err != nil {
		t.Fatalf("anonymous publish on -p listener: %v %s", err, out)
	}
}

// TestLogLineLimit: a log line is cut to mosquitto's 1,000 bytes (with its
// timestamp and newline), so a 64 KiB client id does not make a 64 KiB line.
func TestLogLineLimit(t *testing.T) {
	var buf bytes.Buffer
	w := &logRouter{types: config.LogAll, timestamp: true, streams: []io.Writer{&buf}}
	for _, n := range []int{10, 2000, 70000} {
		buf.Reset()
		line := "New client connected as " + strings.Repeat("a", n) + ".\n"
		if got, err := w.Write([]byte(line)); err != nil || got != len(line) {
			t.Fatalf("Write = %d, %v; want %d", got, err, len(line))
		}
		out := buf.String()
		if len(out) > maxLogLine || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Fatalf("%d-byte id: line of %d bytes, want at most %d ending in one newline", n, len(out), maxLogLine)
		}
	}
}
