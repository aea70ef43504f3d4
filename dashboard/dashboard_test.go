package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/dashboard"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/metrics"
	"github.com/midge-mqtt/midge/session"
)

type source struct {
	*loop.Server
	b *session.Broker
}

func (s source) SubscriptionsOf(id string) ([]string, bool) { return s.b.SubscriptionsOf(id) }

// serve starts a broker on two event loops and the metrics listener's
// handler (dashboard included) over real sockets.
func serve(t *testing.T) (string, string, *session.Broker) {
	t.Helper()
	o := session.DefaultOptions()
	o.Logger = log.New(io.Discard, "", 0)
	b := session.NewBroker(o)
	srv := loop.New(b, loop.Config{Listeners: []string{"127.0.0.1:0"}, Loops: 2, Logger: o.Logger})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry(b, "9.9.9-test", metrics.ListenerCollector(srv.ListenerClients))
	mux := metrics.Handler(reg)
	dashboard.New(reg, source{srv, b}).Register(mux)
	hs := httptest.NewServer(dashboard.Protect(mux, "", nil))
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv.Addrs()[0].String(), hs.URL, b
}

func connect(t *testing.T, o client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.New(o)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return res.StatusCode
}

// TestClientsPage: 150 clients of three protocol levels, paged, searched,
// with one client's subscriptions on demand.
func TestClientsPage(t *testing.T) {
	addr, url, _ := serve(t)
	versions := []byte{codec.Version31, codec.Version311, codec.Version5}
	for i := 0; i < 150; i++ {
		connect(t, client.Options{Addr: addr, ClientID: fmt.Sprintf("c%03d", i), CleanStart: true,
			Version: versions[i%3], KeepAlive: uint16(30 + i), Username: fmt.Sprintf("user%d", i%7), HasUsername: true})
	}
	sub := connect(t, client.Options{Addr: addr, ClientID: "watcher", CleanStart: true, Version: codec.Version5})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("a/+/c"), QoS: 1},
		codec.Subscription{Filter: []byte("plain/topic"), QoS: 0}, codec.Subscription{Filter: []byte("$share/g/s/#"), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(snapshotWait) // a snapshot taken before the subscriber connected may still be served

	var p dashboard.ClientPage
	getJSON(t, url+"/api/clients?offset=0&limit=100", &p)
	if p.Total != 151 || p.Matched != 151 || len(p.Clients) != 100 {
		t.Fatalf("first page: total %d matched %d rows %d, want 151 151 100", p.Total, p.Matched, len(p.Clients))
	}
	if p.ByProtocol["3"] != 50 || p.ByProtocol["4"] != 50 || p.ByProtocol["5"] != 51 {
		t.Fatalf("by protocol %v", p.ByProtocol)
	}
	first := p.Clients[0]
	if first.ID != "c000" || first.Version != 3 || first.Keepalive != 30 || first.Username != "user0" ||
		!strings.HasPrefix(first.Address, "127.0.0.1:") || time.Since(time.Unix(first.ConnectedAt, 0)) > time.Minute {
		t.Fatalf("first client %+v", first)
	}
	getJSON(t, url+"/api/clients?offset=100&limit=100", &p)
	if len(p.Clients) != 51 || p.Clients[0].ID != "c100" || p.Clients[50].ID != "watcher" {
		t.Fatalf("second page: %d rows from %q", len(p.Clients), p.Clients[0].ID)
	}
	getJSON(t, url+"/api/clients?q=user3", &p)
	if p.Matched != 21 || p.Total != 151 { // i%7 == 3 for i < 150
		t.Fatalf("search user3: matched %d of %d", p.Matched, p.Total)
	}
	getJSON(t, url+"/api/clients?limit=100000", &p)
	if len(p.Clients) != 151 { // capped at 500 rows, and 151 are there
		t.Fatalf("rows %d", len(p.Clients))
	}

	var subs struct {
		ID      string   `json:"id"`
		Filters []string `json:"filters"`
	}
	getJSON(t, url+"/api/subscriptions?id=watcher", &subs)
	if strings.Join(subs.Filters, " ") != "$share/g/s/# a/+/c plain/topic" {
		t.Fatalf("subscriptions %q", subs.Filters)
	}
	if code := getJSON(t, url+"/api/subscriptions?id=nobody", &subs); code != http.StatusNotFound {
		t.Fatalf("unknown client: %d", code)
	}
}

// snapshotWait outlasts the dashboard's snapshot of the clients.
const snapshotWait = 1100 * time.Millisecond

// TestStatsMatchMetrics: /api/stats carries the values /metrics has, read
// from the same registry, after a known workload.
func TestStatsMatchMetrics(t *testing.T) {
	addr, url, _ := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := connect(t, client.Options{Addr: addr, ClientID: "s", CleanStart: true})
	got := make(chan struct{}, 100)
	sub.OnMessage = func(*client.Message) { got <- struct{}{} }
	if _, err := sub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("t/#"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, client.Options{Addr: addr, ClientID: "p", CleanStart: true})
	for i := 0; i < 40; i++ {
		if err := pub.Publish(ctx, &client.Message{Topic: []byte("t/x"), Payload: []byte("12345"), QoS: 1, Retain: i == 39}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 40; i++ {
		<-got
	}
	var st dashboard.Stats
	getJSON(t, url+"/api/stats", &st)
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	fams, err := new(expfmt.TextParser).TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"midge_clients_connected", "midge_publish_messages_received_total",
		"midge_publish_messages_sent_total", "midge_publish_bytes_received_total", "midge_subscriptions", "midge_retained_messages"} {
		f := fams[name]
		if f == nil {
			t.Fatalf("/metrics has no %s", name)
		}
		m := f.GetMetric()[0]
		v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		if st.Metrics[name] != v {
			t.Errorf("%s: /api/stats %v, /metrics %v", name, st.Metrics[name], v)
		}
	}
	want := map[string]float64{"midge_clients_connected": 2, "midge_publish_messages_received_total": 40,
		"midge_publish_bytes_received_total": 200, "midge_subscriptions": 1, "midge_retained_messages": 1}
	for k, v := range want {
		if st.Metrics[k] != v {
			t.Errorf("%s = %v, want %v", k, st.Metrics[k], v)
		}
	}
	if n := st.Metrics[`midge_listener_connections{listener="`+addr+`"}`]; n != 2 {
		t.Errorf("listener connections %v, want 2 (%v)", n, st.Metrics)
	}
	if st.Metrics[`midge_build_info{version="9.9.9-test"}`] != 1 {
		t.Errorf("no build info")
	}
}

// TestPageAndReadOnly: / is the embedded page; anything but GET/HEAD is refused.
func TestPageAndReadOnly(t *testing.T) {
	_, url, _ := serve(t)
	res, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "api/stats") || strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
		t.Fatalf("page: %d, %d bytes (must fetch api/stats and load nothing from elsewhere)", res.StatusCode, len(body))
	}
	res, err = http.Post(url+"/api/stats", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", res.StatusCode)
	}
}

type onePassword struct{ user, pass string }

func (o onePassword) Check(u, p []byte) bool { return string(u) == o.user && string(p) == o.pass }

// TestProtect: with a user set, every path asks for its credentials.
func TestProtect(t *testing.T) {
	h := dashboard.Protect(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), "ops", onePassword{"ops", "s3cret"})
	hs := httptest.NewServer(h)
	defer hs.Close()
	for _, c := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"ops", "wrong", 401}, {"other", "s3cret", 401}, {"ops", "s3cret", 200}} {
		req, _ := http.NewRequest("GET", hs.URL+"/metrics", nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("%s/%s: %d, want %d", c.user, c.pass, res.StatusCode, c.want)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9100": true, "[::1]:9100": true, "localhost:1": true,
		":9100": false, "0.0.0.0:9100": false, "192.168.1.2:9100": false, "example.com:80": false} {
		got, err := dashboard.Loopback(addr)
		if err != nil || got != want {
			t.Errorf("Loopback(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
}

// BenchmarkStats is the broker's cost of one poll of the page (the page
// polls once a second while open).
func BenchmarkStats(b *testing.B) {
	o := session.DefaultOptions()
	o.Logger = log.New(io.Discard, "", 0)
	reg := metrics.NewRegistry(session.NewBroker(o), "bench")
	mux := http.NewServeMux()
	dashboard.New(reg, nil).Register(mux)
	req := httptest.NewRequest(http.MethodGet, "/api/stats", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
