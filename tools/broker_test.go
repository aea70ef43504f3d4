package tools

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

const mosquittoPath = "/usr/sbin/mosquitto"

// freePort asks the kernel for a port on 127.0.0.1 and releases it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// runMosquitto starts Debian's broker on a free port with extra config
// lines and returns its address and a stop function.
func runMosquitto(dir string, extra ...string) (string, func(), error) {
	if _, err := os.Stat(mosquittoPath); err != nil {
		return "", nil, fmt.Errorf("%s is missing: run `make deps` to install mosquitto", mosquittoPath)
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	lines := append([]string{fmt.Sprintf("listener %d 127.0.0.1", port), "allow_anonymous true"}, extra...)
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(mosquittoPath, "-c", conf)
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

// startBroker runs a mosquitto for one test; it fails the test (never
// skips) when the binary is missing.
func startBroker(t testing.TB, extra ...string) string {
	t.Helper()
	addr, stop, err := runMosquitto(t.TempDir(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}
