package metrics

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/session"
)

// startBroker serves a broker on 127.0.0.1 (kernel-picked port) and its
// metrics on an httptest server.
func startBroker(t *testing.T) (b *session.Broker, mqttAddr, metricsURL string) {
	t.Helper()
	o := session.DefaultOptions()
	o.Logger = log.New(io.Discard, "", 0)
	b = session.NewBroker(o)
	srv := loop.New(b, loop.Config{Listeners: []string{"127.0.0.1:0"}, Loops: 2, Logger: o.Logger})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(Handler(NewRegistry(b, "9.9.9-test")))
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return b, srv.Addrs()[0].String(), hs.URL
}

// scrape fetches /metrics and parses it with Prometheus's own text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the single sample of a family (counter or gauge).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil || len(f.Metric) != 1 {
		t.Fatalf("metric %s missing or not single", name)
	}
	m := f.Metric[0]
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s has type %v", name, f.GetType())
	return 0
}

func connect(t *testing.T, addr, id string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := client.New(client.Options{Addr: addr, ClientID: id, CleanStart: true})
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestScrapeAfterWorkload: a known workload (two clients, one subscription,
// three QoS 1 publishes, one retained) shows up exactly in the scrape.
func TestScrapeAfterWorkload(t *testing.T) {
	b, addr, url := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	sub := connect(t, addr, "m-sub")
	got := make(chan struct{}, 3)
	sub.OnMessage = func(*client.Message) { got <- struct{}{} }
	if _, err := sub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("m/#"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, addr, "m-pub")
	for i, retain := range []bool{true, false, false} {
		m := &client.Message{Topic: []byte("m/x"), Payload: []byte("hello"), QoS: 1, Retain: retain}
		if err := pub.Publish(ctx, m); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for range 3 {
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatal("subscriber did not get 3 messages")
		}
	}

	fams := scrape(t, url)
	want := []struct {
		name string
		v    float64
	}{
		{"midge_clients_connected", 2},
		{"midge_clients_sessions", 2},
		{"midge_clients_maximum", 2},
		{"midge_connects_total", 2},
		{"midge_connections_opened_total", 2},
		{"midge_subscriptions", 1},
		{"midge_retained_messages", 1},
		{"midge_publish_messages_received_total", 3},
		{"midge_publish_messages_sent_total", 3},
		{"midge_publish_messages_dropped_total", 0},
		{"midge_publish_bytes_received_total", 15},
		{"midge_publish_bytes_sent_total", 15},
		{"midge_clients_expired_total", 0},
	}
	for _, w := range want {
		if got := value(t, fams, w.name); got != w.v {
			t.Errorf("%s = %v, want %v", w.name, got, w.v)
		}
	}
	// The same atomics as $SYS: bytes are whatever the broker counted (the
	// subscriber's PUBACKs may still be arriving, so at most what it counts now).
	if got, now := value(t, fams, "midge_bytes_received_total"), float64(b.Stats.BytesReceived.Load()); got > now || got == 0 {
		t.Errorf("midge_bytes_received_total = %v, want non-zero and at most %v", got, now)
	}
	if got := value(t, fams, "midge_messages_received_total"); got < 2+1+3 { // CONNECTs, SUBSCRIBE, PUBLISHes
		t.Errorf("midge_messages_received_total = %v, want >= 6", got)
	}
	if bi := fams["midge_build_info"]; bi == nil || bi.Metric[0].GetLabel()[0].GetValue() != "9.9.9-test" {
		t.Errorf("midge_build_info does not carry the version: %v", bi)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "midge_uptime_seconds"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}

	// Read at scrape time: a disconnect shows in the next scrape.
	if err := pub.Disconnect(codec.Success, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for value(t, scrape(t, url), "midge_clients_connected") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("midge_clients_connected did not fall to 1 after a DISCONNECT")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPprof: /debug/pprof/ is served beside /metrics.
func TestPprof(t *testing.T) {
	_, _, url := startBroker(t)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %s, %d bytes", path, resp.Status, len(body))
		}
		if path == "/debug/pprof/" && !strings.Contains(string(body), "goroutine") {
			t.Errorf("pprof index does not list profiles")
		}
	}
}

// BenchmarkScrape is the cost of one /metrics request (broker, Go runtime
// and process collectors), served in process.
func BenchmarkScrape(b *testing.B) {
	o := session.DefaultOptions()
	o.Logger = log.New(io.Discard, "", 0)
	h := Handler(NewRegistry(session.NewBroker(o), "bench"))
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
