package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestMetricsListenerCredentials: off loopback the metrics listener needs
// metrics_user, a user of password_file, or midge refuses to start; with
// one, every path (dashboard, API, /metrics) asks for its password.
func TestMetricsListenerCredentials(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if out, err := exec.Command(midgeBin, "passwd", "-c", "-b", pw, "ops", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("midge passwd: %v\n%s", err, out)
	}
	refused := []struct{ name, text, want string }{
		{"open without user", "metrics_listener 0.0.0.0:1\n", "metrics_listener 0.0.0.0:1 is not on loopback: set metrics_user"},
		{"any address without user", "metrics_listener :1\n", "is not on loopback"},
		{"user without password file", "metrics_listener 0.0.0.0:1\nmetrics_user ops\n", "metrics_user ops: no password_file"},
		{"user not in password file", "password_file " + pw + "\nmetrics_listener 0.0.0.0:1\nmetrics_user eve\n", "metrics_user eve is not in password_file"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			conf := filepath.Join(dir, "refused.conf")
			writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\n%s", freePort(t), c.text))
			out, err := exec.Command(midgeBin, "-c", conf).CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("err %v, output %q, want it to name %q", err, out, c.want)
			}
		})
	}

	port, mport := freePort(t), freePort(t)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\npassword_file %s\nmetrics_listener 127.0.0.1:%d\nmetrics_user ops\n", port, pw, mport))
	startMidge(t, fmt.Sprintf("127.0.0.1:%d", port), "-c", conf)
	base := fmt.Sprintf("http://127.0.0.1:%d", mport)
	for _, path := range []string{"/", "/api/stats", "/api/clients", "/metrics", "/debug/pprof/"} {
		for _, c := range []struct {
			user, pass string
			want       int
		}{{"", "", 401}, {"ops", "wrong", 401}, {"ops", "s3cret", 200}} {
			req, _ := http.NewRequest("GET", base+path, nil)
			if c.user != "" {
				req.SetBasicAuth(c.user, c.pass)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != c.want {
				t.Errorf("%s as %q/%q: %d, want %d", path, c.user, c.pass, res.StatusCode, c.want)
			}
		}
	}
}

// TestDashboardStoreAndQueues: with persistence on, /api/stats (read from
// the /metrics registry) carries the store's size, commits and commit time;
// /api/clients?limit=0 totals the messages queued and in flight over every
// client without listing any.
func TestDashboardStoreAndQueues(t *testing.T) {
	dir := t.TempDir()
	port, mport := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "midge.conf")
	writeFile(t, conf, fmt.Sprintf("user root\nlistener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_inflight_messages 2\nmetrics_listener 127.0.0.1:%d\n", port, dir, mport))
	startMidge(t, addr, "-c", conf)
	base := fmt.Sprintf("http://127.0.0.1:%d", mport)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A subscriber that never acknowledges: two messages in flight (the
	// window), the rest queued.
	sub := client.New(client.Options{Addr: addr, ClientID: "slow", Version: codec.Version311, ManualAck: true})
	if err := sub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	sub.OnMessage = func(*client.Message) {}
	if _, err := sub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("q/#"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := client.New(client.Options{Addr: addr, ClientID: "pub", CleanStart: true, Version: codec.Version311})
	if err := pub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := 0; i < 10; i++ {
		if err := pub.Publish(ctx, &client.Message{Topic: []byte("q/x"), Payload: []byte("reading"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}

	var totals struct {
		Total    int   `json:"total"`
		Queued   int64 `json:"queued"`
		Inflight int64 `json:"inflight"`
		HeldBack *int  `json:"held_back"`
		Clients  []any `json:"clients"`
	}
	waitFor(t, func() bool {
		getJSONURL(t, base+"/api/clients?limit=0", &totals)
		return totals.Inflight == 2 && totals.Queued >= 8
	})
	if totals.Total != 2 || len(totals.Clients) != 0 || totals.HeldBack == nil {
		t.Errorf("totals %+v: want 2 clients, none listed, held_back present", totals)
	}

	var st struct {
		Metrics map[string]float64 `json:"metrics"`
	}
	getJSONURL(t, base+"/api/stats", &st)
	for _, k := range []string{"midge_store_size_bytes", "midge_store_commits_total", "midge_store_commit_seconds_total", "midge_store_batches_total"} {
		if st.Metrics[k] <= 0 {
			t.Errorf("/api/stats %s = %v, want > 0", k, st.Metrics[k])
		}
	}
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, k := range []string{"\nmidge_store_size_bytes ", "\nmidge_store_commit_seconds_total "} {
		if !strings.Contains(string(body), k) {
			t.Errorf("/metrics has no %q", strings.TrimSpace(k))
		}
	}
}

func getJSONURL(t *testing.T, url string, v any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
