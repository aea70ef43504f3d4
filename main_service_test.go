package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
)

// findProcess is the pid of the process whose command line holds every
// one of words (a test's own temporary paths), or 0.
func findProcess(words ...string) int {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		line, all := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return pid
		}
	}
	return 0
}

// sessionOf is the session id of pid (field 6 of /proc/PID/stat).
func sessionOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	sid, _ := strconv.Atoi(f[3])
	return sid
}

// TestDaemon: `midge -d` returns once the broker listens, which goes on in
// its own session; errors before that are reported by `midge -d` itself
// with exit status 1.
func TestDaemon(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	logPath := filepath.Join(dir, "midge.log")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nlog_dest file %s\n", port, logPath))
	cmd := exec.Command(midgeBin, "-d", "-c", conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("midge -d: %v\n%s", err, out)
	}
	pid := findProcess(midgeBin, conf)
	if pid == 0 {
		t.Fatalf("no daemon running with %s", conf)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		waitFor(t, func() bool { return syscall.Kill(pid, 0) != nil })
	})
	// Ready means listening: no wait here.
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		t.Fatalf("the daemon does not listen once midge -d has returned: %v", err)
	}
	c.Close()
	if pid == cmd.Process.Pid || sessionOf(t, pid) != pid {
		t.Fatalf("pid %d (midge -d was %d) is not the leader of its own session (%d)", pid, cmd.Process.Pid, sessionOf(t, pid))
	}
	for _, fd := range []int{0, 1, 2} {
		if to, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd)); to != os.DevNull {
			t.Errorf("daemon's fd %d is %q, want %s", fd, to, os.DevNull)
		}
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	waitFor(t, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "terminating")
	})

	for _, c := range []struct{ name, text, want string }{
		{"bad config", "listener 1883\nno_such_key 1\n", `unknown configuration key "no_such_key"`},
		{"port in use", fmt.Sprintf("listener %d 127.0.0.1\n", port), "address already in use"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "port in use" {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
			}
			bad := filepath.Join(dir, "bad.conf")
			writeFile(t, bad, c.text)
			out, err := exec.Command(midgeBin, "-d", "-c", bad).CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("midge -d: %v, %q; want exit 1 naming %q", err, out, c.want)
			}
			if pid := findProcess(midgeBin, bad); pid != 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("a daemon (%d) runs on a bad start", pid)
			}
		})
	}
}

// TestSystemdNotify: with $NOTIFY_SOCKET (Type=notify), midge sends
// READY=1 with its pid once its listeners accept, and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := freePort(t)
	// user root: the test's socket is in root's temporary directory, which
	// the default user (mosquitto) may not enter; systemd's socket is open to all.
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nuser root\n", port))
	cmd := exec.Command(midgeBin, "-c", conf)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stopProcess(cmd, syscall.SIGKILL)
	read := func() string {
		buf := make([]byte, 512)
		_ = ln.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v\n%s", err, out.String())
		}
		return string(buf[:n])
	}
	if got, want := read(), fmt.Sprintf("READY=1\nMAINPID=%d", cmd.Process.Pid); got != want {
		t.Fatalf("notification %q, want %q", got, want)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		t.Fatalf("READY=1 before the listener accepts: %v", err)
	}
	c.Close()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("on SIGTERM: %q", got)
	}
}

// TestLogReopenOnSIGHUP: logrotate renames the log file and sends SIGHUP;
// midge goes on logging into a new file of the same name.
func TestLogReopenOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	logPath := filepath.Join(dir, "midge.log")
	// user root: the reopened file is in root's temporary directory.
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nlog_dest file %s\nuser root\n", port, logPath))
	cmd, _ := startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-c", conf)
	has := func(path, s string) bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), s)
	}
	waitFor(t, func() bool { return has(logPath, "Opening ipv4 listen socket") })
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(syscall.SIGHUP)
	// "Reloading config." is logged once the reload is in force, the log
	// reopened: into the new file.
	waitFor(t, func() bool { return has(logPath, "Reloading config.") })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.New(client.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), ClientID: "after-rotation", CleanStart: true})
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, func() bool { return has(logPath, "New client connected from 127.0.0.1") })
	if has(logPath+".1", "New client connected") {
		t.Fatalf("logged into the rotated file after SIGHUP")
	}
}
