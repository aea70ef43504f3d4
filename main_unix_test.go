package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnixSocketListener: `listener 0 PATH` serves MQTT on a Unix domain
// socket, with that listener's security settings, for Debian's
// mosquitto_pub/mosquitto_sub --unix; a stale socket file left by a crash
// is replaced at start, and the file is removed at stop; a path that is not
// a socket, or a socket in use, stops the broker.
func TestUnixSocketListener(t *testing.T) {
	needMosquittoClients(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "midge.sock")
	// A stale socket: bound, closed, its file left behind.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	pw := filepath.Join(dir, "pw")
	mosquittoPasswd(t, pw, true, "alice", "secret")
	port := freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, "per_listener_settings true\nuser root\n"+
		"listener "+itoa(port)+" 127.0.0.1\nallow_anonymous true\n"+
		"listener 0 "+sock+"\nallow_anonymous false\npassword_file "+pw+"\n")
	cmd, out := startMidge(t, "127.0.0.1:"+itoa(port), "-c", conf)
	waitFor(t, func() bool { return strings.Contains(out.String(), "Opening unix listen socket on path "+sock+".") })

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, "mosquitto_sub", "--unix", sock, "-u", "alice", "-P", "secret", "-t", "ipc/#", "-v", "-C", "1", "-i", "unix-sub")
	var subOut lockedBuffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "as unix-sub") })
	// The listener's security applies: no password, no connection.
	if b, err := exec.CommandContext(ctx, "mosquitto_pub", "--unix", sock, "-t", "ipc/x", "-m", "anon").CombinedOutput(); err == nil {
		t.Fatalf("anonymous publish over the Unix socket succeeded: %s", b)
	}
	if b, err := exec.CommandContext(ctx, "mosquitto_pub", "--unix", sock, "-u", "alice", "-P", "secret", "-t", "ipc/x", "-m", "hello", "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub --unix: %v %s", err, b)
	}
	if err := sub.Wait(); err != nil || subOut.String() != "ipc/x hello\n" {
		t.Fatalf("mosquitto_sub --unix: %v %q", err, subOut.String())
	}

	// A second broker on the same socket refuses to start.
	conf2 := filepath.Join(dir, "second.conf")
	writeFile(t, conf2, "listener 0 "+sock+"\nuser root\n")
	if b, err := exec.Command(midgeBin, "-c", conf2).CombinedOutput(); err == nil || !strings.Contains(string(b), "in use") {
		t.Fatalf("second broker on a socket in use: %v %s", err, b)
	}
	if !stopProcess(cmd, sigterm) {
		t.Fatal("midge did not stop")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file left after stop: %v", err)
	}

	// A path that is not a socket is never removed.
	writeFile(t, sock, "data")
	if b, err := exec.Command(midgeBin, "-c", conf2).CombinedOutput(); err == nil || !strings.Contains(string(b), "not a socket") {
		t.Fatalf("regular file at the socket path: %v %s", err, b)
	}
}
