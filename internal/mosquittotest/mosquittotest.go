// Package mosquittotest runs Debian's mosquitto broker for tests that check
// midge's client and tools against the reference broker.
package mosquittotest

import (
	"bufio"
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

// Path is where Debian installs the broker.
const Path = "/usr/sbin/mosquitto"

// freePort asks the kernel for a port on 127.0.0.1 and releases it.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Run starts Debian's broker on a free port with extra config
// lines and returns its address and a stop function.
func Run(dir string, extra ...string) (string, func(), error) {
	if _, err := os.Stat(Path); err != nil {
		return "", nil, fmt.Errorf("%s is missing: run `make deps` to install mosquitto", Path)
	}
	port, err := FreePort()
	if err != nil {
		return "", nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	lines := append([]string{fmt.Sprintf("listener %d 127.0.0.1", port), "allow_anonymous true"}, extra...)
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(Path, "-c", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive a killed test binary
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	go func() { // drain the broker's log so it never blocks
		s := bufio.NewScanner(stderr)
		for s.Scan() {
		}
	}()
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("mosquitto did not listen on %s within 5s", addr)
}

// Start runs a mosquitto for one test; it fails the test (never
// skips) when the binary is missing.
func Start(t testing.TB, extra ...string) string {
	t.Helper()
	addr, stop, err := Run(t.TempDir(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}
