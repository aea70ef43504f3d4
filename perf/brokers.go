package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// brokerSpec says how to start one broker on a given port.
type brokerSpec struct {
	Name string
	// Command has the port as "{port}" or the config file as "{conf}".
	Command string
	// Conf is the config file's text, with the port as "{port}" and a
	// fresh directory per run as "{store}".
	Conf string
	// Wait bounds how long it may take to open its port (default 10 s; a
	// cluster node opens it once it has joined).
	Wait time.Duration
}

// mosquittoConf gives mosquitto the settings midge has by default: no
// persistence, mosquitto 2.0's default limits written out, no log, and
// TCP_NODELAY as midge sets it (mosquitto's default leaves Nagle on, which
// alone puts its latency at 10 000 msg/s in milliseconds).
const mosquittoConf = midgeConf + `set_tcp_nodelay true
`

// midgeConf is what both brokers run with. Without `log_dest none` midge,
// like mosquitto, logs a line per connect and disconnect: in the conns
// scenario that alone was two writes per connection that mosquitto did
// not make.
const midgeConf = `listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 20
max_queued_messages 1000
max_connections -1
log_dest none
`

// parseBroker parses -broker name=command.
func parseBroker(s string) (brokerSpec, error) {
	name, cmd, ok := strings.Cut(s, "=")
	if !ok || name == "" || !strings.Contains(cmd, "{port}") {
		return brokerSpec{}, fmt.Errorf("perf: -broker %q: want name=command with {port}", s)
	}
	return brokerSpec{Name: name, Command: cmd}, nil
}

// ensureMosquitto returns the path of mosquitto, installing Debian's
// package when it is missing (as root).
func ensureMosquitto(log func(string, ...any)) (string, error) {
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/bin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	log("mosquitto is missing: installing Debian's package")
	for _, args := range [][]string{{"apt-get", "update"}, {"apt-get", "install", "-y", "mosquitto"}} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("perf: %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The package starts a system service on 1883; the harness runs its own.
	_ = exec.Command("service", "mosquitto", "stop").Run()
	return "/usr/sbin/mosquitto", nil
}

// mosquittoVersion is the first line of `mosquitto -h`.
func mosquittoVersion(path string) string {
	out, _ := exec.Command(path, "-h").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// runningBroker is a broker process started for one run.
type runningBroker struct {
	cmd  *exec.Cmd
	Port int
	Pid  int
	log  string

	waited chan error
}

// stop ends the broker with SIGTERM (so that profiles are written), and
// SIGKILL if it has not exited after 15 s.
func (b *runningBroker) stop() error {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.waited:
		return nil
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.waited
		return errors.New("perf: broker ignored SIGTERM for 15s; killed")
	}
}

// start runs spec on a free port in dir and waits until it accepts connections.
func start(spec brokerSpec, dir string) (*runningBroker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// {name} tells the nodes of a cluster apart (e.g. in -midge-args
	// "--cpuprofile DIR/{name}.pprof").
	line := strings.NewReplacer("{port}", strconv.Itoa(port), "{name}", spec.Name).Replace(spec.Command)
	if strings.Contains(line, "{conf}") {
		conf := filepath.Join(dir, spec.Name+".conf")
		body := strings.ReplaceAll(spec.Conf, "{port}", strconv.Itoa(port))
		if strings.Contains(body, "{store}") { // a fresh store per run
			store, err := os.MkdirTemp(dir, spec.Name+"-store")
			if err != nil {
				return nil, err
			}
			body = strings.ReplaceAll(body, "{store}", store)
		}
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			return nil, err
		}
		line = strings.ReplaceAll(line, "{conf}", conf)
	}
	args := strings.Fields(line)
	logPath := filepath.Join(dir, spec.Name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf: start %s: %w", spec.Name, err)
	}
	b := &runningBroker{cmd: cmd, Port: port, Pid: cmd.Process.Pid, log: logPath}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	wait := spec.Wait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			b.waited = exited
			return b, nil
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("perf: %s exited: %v\n%s", spec.Name, err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(b.Pid, syscall.SIGKILL)
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("perf: %s did not open its port within %v\n%s", spec.Name, wait, out)
		}
	}
}
