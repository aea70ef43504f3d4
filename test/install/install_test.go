// Package install checks `make install` and `make uninstall`: the layout
// under DESTDIR, a service started from the installed files, and the
// systemd unit under `systemd-analyze verify`.
package install

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestInstallDestdir: make install DESTDIR=… PREFIX=/usr lays out the
// binary, the unit (pointing at them), the configuration with include_dir
// and the logrotate file; the installed broker runs from the installed
// configuration (paths moved under the test's directory) with a conf.d
// file read through include_dir; make uninstall removes what is not
// configuration.
func TestInstallDestdir(t *testing.T) {
	dest := t.TempDir()
	run(t, "make", "-s", "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/usr")
	want := []string{"usr/bin/midge", "usr/lib/systemd/system/midge.service", "etc/midge/midge.conf", "etc/logrotate.d/midge",
		"usr/share/man/man1/midge.1"}
	for _, f := range want {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Fatalf("not installed: %v", err)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/midge.service"))
	for _, line := range []string{"Type=notify", "ExecStart=/usr/bin/midge -c /etc/midge/midge.conf", "ExecReload=/bin/kill -HUP $MAINPID"} {
		if !strings.Contains(string(unit), line+"\n") {
			t.Errorf("unit lacks %q", line)
		}
	}

	// The installed configuration, with its absolute paths moved here.
	conf, _ := os.ReadFile(filepath.Join(dest, "etc/midge/midge.conf"))
	text := strings.NewReplacer("/etc/midge/", dest+"/etc/midge/", "/var/", dest+"/var/").Replace(string(conf))
	if !strings.Contains(text, "include_dir "+dest+"/etc/midge/conf.d") {
		t.Fatalf("midge.conf has no include_dir:\n%s", conf)
	}
	for _, d := range []string{"var/lib/midge", "var/log/midge"} { // systemd makes them (StateDirectory, LogsDirectory)
		if err := os.MkdirAll(filepath.Join(dest, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	confPath := filepath.Join(dest, "etc/midge/midge.conf")
	if err := os.WriteFile(confPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dest, "etc/midge/conf.d/local.conf"), []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nuser root\n", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(dest, "usr/bin/midge"), "-c", confPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the installed broker does not listen on conf.d's port %d: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "var/log/midge/midge.log")); !strings.Contains(string(b), "starting") {
		t.Errorf("no log in var/log/midge/midge.log: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dest, "var/lib/midge/midge.db")); err != nil {
		t.Errorf("no store in var/lib/midge: %v", err)
	}

	run(t, "make", "-s", "-C", "../..", "uninstall", "DESTDIR="+dest, "PREFIX=/usr")
	for _, f := range []string{"usr/bin/midge", "usr/lib/systemd/system/midge.service", "etc/logrotate.d/midge"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err == nil {
			t.Errorf("%s left by uninstall", f)
		}
	}
	if _, err := os.Stat(confPath); err != nil {
		t.Errorf("uninstall removed the configuration: %v", err)
	}
}

// TestUnitVerifies: the unit of an install under a prefix passes
// `systemd-analyze verify` (which needs ExecStart's binary in place, hence
// no DESTDIR here).
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found (Debian's systemd package)")
	}
	prefix := t.TempDir()
	run(t, "make", "-s", "-C", "../..", "install", "PREFIX="+prefix, "SYSCONFDIR="+prefix+"/etc")
	unit := filepath.Join(prefix, "lib/systemd/system/midge.service")
	out, err := exec.Command(sa, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
