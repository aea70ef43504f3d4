package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// brokerConf is what the soak runs midge with: persistence on, every QoS 1/2
// ack after its sync, and the default queue limit (1000), which the soak
// keeps offline queues under (a persistent subscriber is away for at most
// 10 s and takes ~10–40 msg/s), so that no QoS 1/2 message may be dropped.
// user root: started as root, midge would otherwise become the mosquitto
// user, who cannot reach a store in a directory only root may enter.
const brokerConf = `listener %d 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location %s
persistence_sync always
max_queued_messages 1000
max_inflight_messages 20
max_connections -1
metrics_listener 127.0.0.1:%d
connection_messages false
log_dest stdout
`

// broker is a midge started for the soak (or one it was pointed at).
type broker struct {
	addr    string
	pid     int    // 0: not known (no RSS)
	metrics string // host:port of /metrics, or ""
	store   string // persistence directory, or ""
	conf    string
	cmd     *exec.Cmd
	exited  chan error
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// setConf replaces the line of conf with line's key, or adds line.
func setConf(conf, line string) string {
	key, _, _ := strings.Cut(line, " ")
	lines := strings.Split(strings.TrimSuffix(conf, "\n"), "\n")
	for i, l := range lines {
		if k, _, _ := strings.Cut(l, " "); k == key {
			lines[i] = line
			return strings.Join(lines, "\n") + "\n"
		}
	}
	return conf + line + "\n"
}

// startBroker runs bin at a free port with brokerConf in dir (set: config lines that
// replace brokerConf's) and waits until it accepts connections.
func startBroker(bin, dir string, set []string) (*broker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	store := filepath.Join(dir, "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(brokerConf, port, store, mport)
	for _, line := range set {
		conf = setConf(conf, line)
	}
	confPath := filepath.Join(dir, "midge.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "midge.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &broker{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), pid: cmd.Process.Pid,
		metrics: net.JoinHostPort("127.0.0.1", strconv.Itoa(mport)), store: store, conf: conf, cmd: cmd, exited: make(chan error, 1)}
	go func() { b.exited <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			c.Close()
			return b, nil
		}
		select {
		case err := <-b.exited:
			out, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("soak: midge exited: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop()
			return nil, errors.New("soak: midge did not open its port within 15s")
		}
	}
}

// stop ends a broker the soak started: SIGTERM, then SIGKILL after 20 s.
func (b *broker) stop() error {
	if b.cmd == nil {
		return nil
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.exited:
		return err
	case <-time.After(20 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
		return errors.New("soak: midge ignored SIGTERM for 20s; killed")
	}
}

// alive reports whether a started broker is still running.
func (b *broker) alive() error {
	if b.cmd == nil {
		return nil
	}
	select {
	case err := <-b.exited:
		b.exited <- err
		return fmt.Errorf("soak: midge exited during the soak: %v", err)
	default:
		return nil
	}
}

// rss is the broker's resident set in bytes, from /proc.
func (b *broker) rss() int64 {
	if b.pid == 0 {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", b.pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// storeSize is the bytes of every file under the persistence directory.
func (b *broker) storeSize() int64 {
	if b.store == "" {
		return 0
	}
	var n int64
	filepath.WalkDir(b.store, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// scrape reads the named values from the broker's /metrics.
func (b *broker) scrape(names ...string) map[string]float64 {
	out := map[string]float64{}
	if b.metrics == "" {
		return out
	}
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + b.metrics + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, n := range names {
			if rest, ok := strings.CutPrefix(line, n+" "); ok {
				out[n], _ = strconv.ParseFloat(rest, 64)
			}
		}
	}
	return out
}
