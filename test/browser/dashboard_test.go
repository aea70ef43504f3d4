// Package browser drives midge's pages in headless Chromium (Debian's
// package, installed by `make deps`). Screenshots land in
// test/browser/artifacts/ (not committed).
package browser

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startBroker builds and runs midge with a metrics listener; it returns
// the MQTT and HTTP addresses.
func startBroker(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "midge")
	if out, err := exec.Command("go", "build", "-o", bin, "../..").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	port, mport := freePort(t), freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	// Persistence on, so that the store's tiles and chart show (user root:
	// the test's directory is root's); a bridge to a port nobody listens
	// on, so that the bridges' table shows it down.
	text := fmt.Sprintf("user root\nlistener %d 127.0.0.1\nallow_anonymous true\nmetrics_listener 127.0.0.1:%d\npersistence true\npersistence_location %s/\n", port, mport, dir) +
		fmt.Sprintf("connection board-uplink\naddress 127.0.0.1:%d\ntopic load/# out 0\n", freePort(t))
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("midge did not stop")
		}
		if t.Failed() {
			t.Logf("midge output:\n%s", out.String())
		}
	})
	addr, maddr := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", mport)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + maddr + "/metrics")
		if err == nil {
			res.Body.Close()
			return addr, maddr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics listener: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load connects n idle clients and one publisher that sends about rate
// QoS 0 messages a second to a subscriber, and a retained one every 10 ms,
// until the test ends.
func load(t *testing.T, addr string, n, rate int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	dial := func(id string, v byte) *client.Client {
		c := client.New(client.Options{Addr: addr, ClientID: id, CleanStart: true, Version: v, KeepAlive: 60})
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		if err := c.Connect(cctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for i := 0; i < n; i++ {
		dial(fmt.Sprintf("idle-%04d", i), []byte{codec.Version311, codec.Version5}[i%2])
	}
	sub := dial("sink", codec.Version5)
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := sub.Subscribe(sctx, nil, codec.Subscription{Filter: []byte("load/#")}); err != nil {
		t.Fatal(err)
	}
	pub := dial("source", codec.Version311)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		m := &client.Message{Topic: []byte("load/x"), Payload: []byte("0123456789abcdef")}
		// A retained reading each tick: the store commits, so that its
		// chart has something to draw.
		state := &client.Message{Topic: []byte("load/state"), Payload: []byte("on"), Retain: true}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := pub.Publish(ctx, state); err != nil {
					return
				}
				for i := 0; i < rate/100; i++ {
					if err := pub.Publish(ctx, m); err != nil {
						return // the test's end closes the client before its context
					}
				}
			}
		}
	}()
}

// chromium runs headless Chromium on url with args and returns its stdout.
func chromium(t *testing.T, url string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: `make deps` installs Debian's chromium for this test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, url)...)
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errs.String())
	}
	return out.String()
}

// output is the text of the element with id in a dumped DOM.
func output(t *testing.T, dom, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no element %q in the page:\n%s", id, dom)
	}
	return m[1]
}

func number(t *testing.T, s string) float64 {
	t.Helper()
	f := strings.Fields(s)
	if len(f) == 0 {
		t.Fatalf("not a number: %q", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	if len(f) > 1 && f[1] == "k" {
		v *= 1000
	}
	return v
}

func scrape(t *testing.T, maddr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	fams, err := new(expfmt.TextParser).TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := fams[name].GetMetric()[0]
	return m.GetGauge().GetValue() + m.GetCounter().GetValue()
}

func artifacts(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboard loads the overview under load in Chromium: the charts'
// numbers move, the connected count is /metrics's, and screenshots are
// saved; then the clients page shows the first page of 150 clients.
func TestDashboard(t *testing.T) {
	addr, maddr := startBroker(t)
	const idle, rate = 150, 2000
	load(t, addr, idle, rate)
	url := "http://" + maddr + "/"

	// Virtual time runs the page's 1 s poll many times within the budget.
	dom := chromium(t, url, "--virtual-time-budget=6000", "--dump-dom")
	if polls := regexp.MustCompile(`data-polls="(\d+)"`).FindStringSubmatch(dom); polls == nil || number(t, polls[1]) < 3 {
		t.Fatalf("the page polled %v times, want at least 3", polls)
	}
	connected := scrape(t, maddr, "midge_clients_connected")
	if got := number(t, output(t, dom, "v-clients")); got != connected || got != idle+2 {
		t.Errorf("clients tile %v, /metrics %v, want %d", got, connected, idle+2)
	}
	// The chart's peaks: the broker counts per loop turn, and virtual time
	// polls faster than real time, so one sample may see no change; the
	// rate itself depends on how the load keeps up on a busy machine.
	peak := func(name string) float64 {
		m := regexp.MustCompile(`data-` + name + `="([0-9.e+]+)"`).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("no data-%s on the page", name)
		}
		return number(t, m[1])
	}
	if in := peak("peak-in"); in <= 0 || in > rate*10 {
		t.Errorf("publish in/s peaks at %v on the chart, the load sends about %d", in, rate)
	}
	if out := peak("peak-out"); out <= 0 {
		t.Errorf("publish out/s peaks at %v: the chart does not move", out)
	}
	if !strings.Contains(output(t, dom, "version"), "version ") {
		t.Errorf("version: %q", output(t, dom, "version"))
	}
	if !strings.Contains(dom, "<td>"+addr+"</td><td>152</td>") {
		t.Errorf("listeners table lacks %s with 152 connections", addr)
	}
	// Persistence is on: its tiles and chart show; there is no cluster, so
	// its tiles do not; the bridge is listed, down.
	shown := func(label string) bool {
		m := regexp.MustCompile(`<div class="tile( hide)?"><div>` + regexp.QuoteMeta(label) + `</div>`).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("no tile %q on the page", label)
		}
		return m[1] == ""
	}
	for label, want := range map[string]bool{"store size": true, "commit latency (mean)": true, "cluster peers up": false, "queued messages": true} {
		if shown(label) != want {
			t.Errorf("tile %q shown: %v, want %v", label, !want, want)
		}
	}
	if size := output(t, dom, "v-storesize"); !strings.HasSuffix(size, "B") || number(t, size) <= 0 {
		t.Errorf("store size tile %q, want a size", size)
	}
	if lat := output(t, dom, "v-commitlat"); !strings.HasSuffix(lat, " ms") {
		t.Errorf("commit latency tile %q, want milliseconds", lat)
	}
	if !strings.Contains(dom, `<div class="chart" id="chart4">`) {
		t.Error("the store's chart is hidden")
	}
	if strings.Contains(dom, `id="bridgebox" class="hide"`) || !strings.Contains(dom, "<td>board-uplink</td><td>no</td>") {
		t.Error("the bridges' table is hidden, or lacks board-uplink (down)")
	}
	if q := output(t, dom, "v-queued"); q == "–" {
		t.Errorf("queued tile %q: the clients' totals were not read", q)
	}

	dir := artifacts(t)
	chromium(t, url, "--virtual-time-budget=20000", "--window-size=1280,860", "--screenshot="+filepath.Join(dir, "overview.png"))

	dom = chromium(t, url+"#clients", "--virtual-time-budget=3000", "--dump-dom")
	if r := output(t, dom, "range"); r != "1–100 of 152" {
		t.Errorf("clients range %q, want 1–100 of 152", r)
	}
	if rows := strings.Count(dom, `<a data-id="idle-`); rows != 100 {
		t.Errorf("%d rows on the first page, want 100", rows)
	}
	if !strings.Contains(dom, "<td>idle-0000</td>") {
		t.Errorf("first page lacks idle-0000")
	}
	chromium(t, url+"#clients", "--virtual-time-budget=3000", "--window-size=1280,860", "--screenshot="+filepath.Join(dir, "clients.png"))
	for _, f := range []string{"overview.png", "clients.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() < 10000 {
			t.Errorf("screenshot %s: %v", f, err)
		}
	}
}
