package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/config"
)

// TestLogSyslog: log_dest syslog sends each line of an enabled type to the
// local syslog socket as a datagram, with log_facility's local facility and
// the type's priority; types log_type leaves out are not sent.
func TestLogSyslog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	pc, err := net.ListenPacket("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	saved := syslogPath
	syslogPath = sock
	defer func() { syslogPath = saved }()

	cfg, err := config.ParseReader("m.conf", strings.NewReader("log_dest syslog\nlog_facility 5\nlog_type error\nlog_type notice\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := newSetup(cfg, false, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer st.logs.syslog.close()
	st.logger.Printf("Warning: not sent (log_type has no warning)")
	st.logger.Printf("Error: something failed")
	st.logger.Printf("New client connected from 127.0.0.1 as x.")
	want := []string{"<171>", "midge[" + itoa(os.Getpid()) + "]: Error: something failed", // local5 (21<<3) | LOG_ERR
		"<173>", "midge[" + itoa(os.Getpid()) + "]: New client connected"} // | LOG_NOTICE
	for i := 0; i < 2; i++ {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1024)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		got := string(buf[:n])
		if !strings.HasPrefix(got, want[2*i]) || !strings.Contains(got, want[2*i+1]) {
			t.Fatalf("datagram %d: %q, want %s...%s", i, got, want[2*i], want[2*i+1])
		}
	}
}

// TestLogTopic: log_dest topic publishes log lines to $SYS/broker/log/X
// (N for notices) for clients to read.
func TestLogTopic(t *testing.T) {
	addr, _ := startConf(t, "listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest topic\n")
	m := dialMQ(t, addr, codec.Version311)
	m.connectOK("reader")
	m.subscribe(1, "$SYS/broker/log/#", 0)
	o := dialMQ(t, addr, codec.Version311)
	o.connectOK("newcomer")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p := m.expect(codec.PUBLISH)
		if string(p.Topic) == "$SYS/broker/log/N" && strings.Contains(string(p.Payload), "as newcomer") {
			return
		}
	}
	t.Fatal("no notice of newcomer's connection on $SYS/broker/log/N")
}

// TestLogTypeFilter: with log_type error and subscribe only, the file gets
// subscription lines (mosquitto's "client qos filter") and errors, and no
// connection notices.
func TestLogTypeFilter(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "midge.log")
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, "")
	port := freePort(t)
	addr := "127.0.0.1:" + itoa(port)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, "listener "+itoa(port)+" 127.0.0.1\nallow_anonymous true\nuser root\npassword_file "+pw+
		"\nlog_dest file "+logFile+"\nlog_type error\nlog_type subscribe\n")
	cmd, _ := startMidge(t, addr, "-c", conf)
	m := dialMQ(t, addr, codec.Version311)
	m.connectOK("s1")
	m.subscribe(1, "a/b", 1)
	if err := os.Remove(pw); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Signal(sighup)
	read := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	waitFor(t, func() bool { return strings.Contains(read(), "Error: reload") })
	if got := read(); !strings.Contains(got, ": s1 1 a/b\n") || strings.Contains(got, "New client connected") ||
		strings.Contains(got, "Reloading config") {
		t.Fatalf("log:\n%s", got)
	}
}
