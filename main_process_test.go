package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/midge-mqtt/midge/codec"
)

// needRoot skips tests of privilege dropping when not run as root (they
// are meaningless then: mosquitto's `user` has no effect).
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: `user` only acts on a broker started as root")
	}
}

// procUID is the real, effective uid of a running process.
func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "Uid:" {
			return f[1] + " " + f[2]
		}
	}
	t.Fatal("no Uid line")
	return ""
}

// openDir is a fresh directory any user may enter (t.TempDir's parent is
// root's only), removed at the end.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "midge-user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestConfUser: started as root, the broker becomes `user` once its
// sockets are bound (default "mosquitto" when that user exists); its store,
// opened as root, goes on working as that user across a restart; an unknown
// user stops it.
func TestConfUser(t *testing.T) {
	needRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	dir := openDir(t)
	port := freePort(t)
	addr := "127.0.0.1:" + itoa(port)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, "listener "+itoa(port)+" 127.0.0.1\nallow_anonymous true\nuser nobody\n"+
		"persistence true\npersistence_location "+dir+"\n")
	for round := 0; round < 2; round++ {
		cmd, out := startMidge(t, addr, "-c", conf)
		waitFor(t, func() bool { return strings.Contains(out.String(), "Running as user nobody") })
		if got := procUID(t, cmd.Process.Pid); got != nobody.Uid+" "+nobody.Uid {
			t.Fatalf("uid %q, want %s", got, nobody.Uid)
		}
		m := dialMQ(t, addr, codec.Version311)
		m.connectOK("u")
		if round == 0 {
			m.publish("kept", "across", 1, 1, true)
			m.expect(codec.PUBACK)
		} else {
			m.subscribe(1, "kept", 1)
			if p := m.expect(codec.PUBLISH); string(p.Payload) != "across" {
				t.Fatalf("retained after restart: %q", p.Payload)
			}
		}
		if !stopProcess(cmd, sigterm) {
			t.Fatal("midge did not stop")
		}
		if strings.Contains(out.String(), "Error") {
			t.Fatalf("errors as user nobody:\n%s", out.String())
		}
	}

	if mosq, err := user.Lookup("mosquitto"); err == nil { // the default
		port := freePort(t)
		cmd, out := startMidge(t, "127.0.0.1:"+itoa(port), "-p", itoa(port))
		waitFor(t, func() bool { return strings.Contains(out.String(), "Running as user mosquitto") })
		if got := procUID(t, cmd.Process.Pid); got != mosq.Uid+" "+mosq.Uid {
			t.Fatalf("default user: uid %q, want %s", got, mosq.Uid)
		}
	}

	writeFile(t, conf, "listener "+itoa(freePort(t))+" 127.0.0.1\nuser no-such-user-here\n")
	out, err := exec.Command(midgeBin, "-c", conf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "user no-such-user-here") {
		t.Fatalf("unknown user: err %v, output %s", err, out)
	}
}

// debianConf is Debian's stock /etc/mosquitto/mosquitto.conf (mosquitto
// 2.0.11-1), which a mosquitto user's first `midge -c` meets.
const debianConf = `# Place your local configuration in /etc/mosquitto/conf.d/
#
# A full description of the configuration file is at
# /usr/share/doc/mosquitto/examples/mosquitto.conf.example

pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log

include_dir /etc/mosquitto/conf.d
`

// TestDebianStockConfig: Debian's stock mosquitto.conf, with a conf.d file
// adding a listener, starts midge unchanged. Its paths are moved under a
// temporary root laid out as Debian's package lays them out (the store and
// pid directories belong to the mosquitto user); nothing else is changed.
func TestDebianStockConfig(t *testing.T) {
	if b, err := os.ReadFile("/etc/mosquitto/mosquitto.conf"); err == nil && string(b) != debianConf {
		t.Logf("note: this machine's /etc/mosquitto/mosquitto.conf differs from Debian's stock file:\n%s", b)
	}
	root := openDir(t)
	for _, d := range []string{"run/mosquitto", "var/lib/mosquitto", "var/log/mosquitto", "etc/mosquitto/conf.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if u, err := user.Lookup("mosquitto"); err == nil && os.Geteuid() == 0 {
		uid, gid := atoi(t, u.Uid), atoi(t, u.Gid)
		for _, d := range []string{"run/mosquitto", "var/lib/mosquitto", "var/log/mosquitto"} {
			if err := os.Chown(filepath.Join(root, d), uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	port := freePort(t)
	writeFile(t, filepath.Join(root, "etc/mosquitto/conf.d/local.conf"),
		"listener "+itoa(port)+" 127.0.0.1\nallow_anonymous true\n")
	conf := filepath.Join(root, "etc/mosquitto/mosquitto.conf")
	writeFile(t, conf, strings.NewReplacer(" /run/", " "+root+"/run/", " /var/", " "+root+"/var/",
		" /etc/", " "+root+"/etc/").Replace(debianConf))

	addr := "127.0.0.1:" + itoa(port)
	cmd, _ := startMidge(t, addr, "-c", conf)
	m := dialMQ(t, addr, codec.Version311)
	m.connectOK("debian")
	m.subscribe(1, "t", 1)
	m.publish("t", "hello", 1, 1, true)
	got := map[codec.PacketType]bool{}
	for i := 0; i < 2; i++ { // PUBACK and the message, in either order
		p, err := m.next(mqWait)
		if err != nil {
			t.Fatal(err)
		}
		got[p.Type] = true
	}
	if !got[codec.PUBACK] || !got[codec.PUBLISH] {
		t.Fatalf("got %v, want PUBACK and PUBLISH", got)
	}

	pid := filepath.Join(root, "run/mosquitto/mosquitto.pid")
	if b, err := os.ReadFile(pid); err != nil || strings.TrimSpace(string(b)) != itoa(cmd.Process.Pid) {
		t.Fatalf("pid file %q (%v)", b, err)
	}
	logFile := filepath.Join(root, "var/log/mosquitto/mosquitto.log")
	waitFor(t, func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "New client connected") && strings.Contains(string(b), "as debian")
	})
	if !stopProcess(cmd, sigterm) {
		t.Fatal("midge did not stop")
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Fatalf("pid file left after stop: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(root, "var/lib/mosquitto/midge.db.d")); err != nil || !fi.IsDir() {
		t.Fatalf("store: %v", err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}
