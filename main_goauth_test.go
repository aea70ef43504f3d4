package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/midge-mqtt/midge/auth/goauth"
	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// goAuthService is an auth service in go-auth's http contract on loopback.
// Users: "slow" is answered after a delay, "broken" gets 500, "bad" 403;
// anyone else with password "pw" may connect. Topics: "slow/..." are
// answered after the delay, "deny/..." refused, "noread/..." refused to
// readers only.
type goAuthService struct {
	addr     string
	delay    time.Duration
	requests atomic.Int32
	release  chan struct{} // closed to let slow answers go
}

func startGoAuthService(t *testing.T) *goAuthService {
	t.Helper()
	s := &goAuthService{delay: 700 * time.Millisecond, release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		var f struct {
			Username, Password, Clientid, Topic string
			Acc                                 int
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &f)
		switch {
		case f.Username == "slow" || (r.URL.Path == "/acl" && len(f.Topic) > 5 && f.Topic[:5] == "slow/"):
			time.Sleep(s.delay)
		case f.Username == "broken":
			w.WriteHeader(500)
			return
		case f.Username == "bad" || (r.URL.Path == "/user" && f.Password != "pw"):
			w.WriteHeader(403)
			return
		case r.URL.Path == "/superuser":
			w.WriteHeader(403)
			return
		case r.URL.Path == "/acl" && len(f.Topic) > 5 && f.Topic[:5] == "deny/",
			r.URL.Path == "/acl" && f.Acc == 1 && strings.HasPrefix(f.Topic, "noread/"):
			w.WriteHeader(403)
			return
		}
		w.WriteHeader(200)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

func goAuthConf(t *testing.T, port int, serviceAddr string, extra string) string {
	host, sport, _ := net.SplitHostPort(serviceAddr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	writeFile(t, conf, fmt.Sprintf(`listener %d 127.0.0.1
auth_plugin /mosquitto/go-auth.so
auth_opt_backends http
auth_opt_http_host %s
auth_opt_http_port %s
auth_opt_http_getuser_uri /user
auth_opt_http_superuser_uri /superuser
auth_opt_http_aclcheck_uri /acl
auth_opt_http_timeout 2
auth_opt_cache true
auth_opt_auth_cache_seconds 30
auth_opt_acl_cache_seconds 30
%s`, port, host, sport, extra))
	return conf
}

// TestGoAuthHTTP drives midge configured as Home Assistant's add-on
// configures mosquitto-go-auth, against a real HTTP service: CONNACK codes
// for grants, denials and errors at 3.1.1 and 5.0; a service that answers
// slowly delays only the client that waits for it (the others connect and
// publish meanwhile: no loop is blocked); a publish whose ACL is not cached
// parks its publisher until the answer; a service that is down refuses
// with "server unavailable".
func TestGoAuthHTTP(t *testing.T) {
	svc := startGoAuthService(t)
	port, mport := freePort(t), freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startMidge(t, addr, "-c", goAuthConf(t, port, svc.addr, fmt.Sprintf("metrics_listener 127.0.0.1:%d\nsys_interval 1\n", mport)))

	for _, c := range []struct {
		v          byte
		user, pass string
		want       byte
	}{
		{codec.Version5, "alice", "pw", 0}, {codec.Version311, "alice", "pw", 0},
		{codec.Version5, "alice", "nope", codec.NotAuthorized}, {codec.Version311, "alice", "nope", codec.ConnRefusedNotAuthorized},
		{codec.Version5, "broken", "pw", codec.ServerUnavailable}, {codec.Version311, "broken", "pw", codec.ConnRefusedServerUnavailable},
	} {
		if _, code := dial(t, addr, c.v, "id-"+c.user, c.user, c.pass, false); code != c.want {
			t.Errorf("v%d %s/%s: CONNACK %#x, want %#x", c.v, c.user, c.pass, code, c.want)
		}
	}

	// A slow answer for one client; twenty others connect and publish
	// while it waits.
	slowDone := make(chan byte, 1)
	slowStart := time.Now()
	go func() {
		_, code := dial(t, addr, codec.Version5, "slow-1", "slow", "pw", false)
		slowDone <- code
	}()
	time.Sleep(50 * time.Millisecond) // the slow CONNECT is in
	var wg sync.WaitGroup
	var worst atomic.Int64
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			start := time.Now()
			c, code := dial(t, addr, codec.Version5, "fast-"+strconv.Itoa(i), "fast"+strconv.Itoa(i), "pw", false)
			if code != 0 {
				t.Errorf("fast %d: %#x", i, code)
				return
			}
			if got := pubCode(t, c, "fast/"+strconv.Itoa(i)); got != 0 && got != codec.NoMatchingSubscribers {
				t.Errorf("fast %d publish: %#x", i, got)
			}
			if d := time.Since(start); int64(d) > worst.Load() {
				worst.Store(int64(d))
			}
		}(i)
	}
	wg.Wait()
	select {
	case code := <-slowDone:
		t.Fatalf("the slow client was answered (%#x) before the others finished", code)
	default:
	}
	if w := time.Duration(worst.Load()); w > svc.delay/2 {
		t.Errorf("a fast client took %v while the slow one waited %v", w, svc.delay)
	}
	if code := <-slowDone; code != 0 {
		t.Fatalf("slow: %#x", code)
	}
	if d := time.Since(slowStart); d < svc.delay {
		t.Fatalf("slow answered in %v, before the service did", d)
	}

	// A publish whose ACL is not cached parks its publisher: the PUBACK
	// comes after the service's answer, and a denial is 0x87.
	pub, _ := dial(t, addr, codec.Version5, "pub-1", "pub", "pw", false)
	start := time.Now()
	if got := pubCode(t, pub, "slow/topic"); got != 0 && got != codec.NoMatchingSubscribers {
		t.Fatalf("slow/topic: %#x", got)
	}
	if d := time.Since(start); d < svc.delay {
		t.Fatalf("PUBACK after %v, before the service answered", d)
	}
	start = time.Now()
	pubCode(t, pub, "slow/topic") // now cached
	if d := time.Since(start); d > svc.delay/2 {
		t.Fatalf("cached publish took %v", d)
	}
	if got := pubCode(t, pub, "deny/x"); got != codec.NotAuthorized {
		t.Fatalf("deny/x: %#x", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	codes, err := pub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("deny/#")}, codec.Subscription{Filter: []byte("ok/#")})
	if err != nil || len(codes) != 2 || codes[0] != codec.NotAuthorized || codes[1] != 0 {
		t.Fatalf("SUBACK %v %v", codes, err)
	}

	// Every decision is counted, in /metrics and in $SYS.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"midge_auth_allowed_total", "midge_auth_denied_total", "midge_auth_errors_total",
		"midge_auth_cache_hits_total", "midge_auth_cache_misses_total"} {
		if v := metricValue(string(body), name); v <= 0 {
			t.Errorf("%s = %v, want > 0", name, v)
		}
	}
	got := make(chan string, 16)
	pub.OnMessage = func(m *client.Message) { got <- string(m.Topic) + " " + string(m.Payload) }
	if codes, err := pub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("$SYS/broker/auth/denied")}); err != nil || codes[0] != 0 {
		t.Fatalf("SUBACK %v %v", codes, err)
	}
	select {
	case m := <-got:
		if n, _ := strconv.Atoi(m[len("$SYS/broker/auth/denied "):]); n < 1 {
			t.Errorf("%s: want denials counted", m)
		}
	case <-time.After(5 * time.Second):
		t.Error("no $SYS/broker/auth/denied")
	}
}

// metricValue reads one sample of a Prometheus text exposition.
func metricValue(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}

// TestGoAuthServiceDown: with the service gone, CONNECT is refused as
// server unavailable, within the timeout.
func TestGoAuthServiceDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startMidge(t, addr, "-c", goAuthConf(t, port, dead, ""))
	for _, v := range []byte{codec.Version5, codec.Version311} {
		start := time.Now()
		_, code := dial(t, addr, v, "c", "alice", "pw", false)
		want := codec.ServerUnavailable
		if v != codec.Version5 {
			want = codec.ConnRefusedServerUnavailable
		}
		if code != want {
			t.Errorf("v%d: %#x, want %#x", v, code, want)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("v%d: answered after %v", v, d)
		}
	}
}

// TestGoAuthFiles: go-auth's files backend, as Home Assistant's add-on
// configures it, through a real socket: its PBKDF2 and bcrypt hashes and
// its ACL file.
func TestGoAuthFiles(t *testing.T) {
	dir := t.TempDir()
	bc, err := bcrypt.GenerateFromPassword([]byte("bpw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	pw, acl := filepath.Join(dir, "pw"), filepath.Join(dir, "acl")
	writeFile(t, pw, "alice:"+goauth.HashPBKDF2("apw", []byte("0123456789abcdef"), 1000)+"\nbob:"+string(bc)+"\n")
	writeFile(t, acl, "pattern readwrite home/%u/#\nuser alice\ntopic read shared/#\n")
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	conf := filepath.Join(dir, "mosquitto.conf")
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nauth_plugin /mosquitto/go-auth.so\nauth_opt_backends files\n"+
		"auth_opt_password_path %s\nauth_opt_acl_path %s\n", port, pw, acl))
	startMidge(t, addr, "-c", conf)
	for _, c := range []struct {
		user, pass string
		want       byte
	}{{"alice", "apw", 0}, {"alice", "bad", codec.NotAuthorized}, {"bob", "bpw", 0}, {"eve", "x", codec.NotAuthorized}} {
		if _, code := dial(t, addr, codec.Version5, "c-"+c.user, c.user, c.pass, false); code != c.want {
			t.Errorf("%s/%s: %#x, want %#x", c.user, c.pass, code, c.want)
		}
	}
	bob, _ := dial(t, addr, codec.Version5, "bob-2", "bob", "bpw", false)
	alice, _ := dial(t, addr, codec.Version5, "alice-2", "alice", "apw", false)
	for _, c := range []struct {
		who   *client.Client
		name  string
		topic string
		pubOK bool
		subOK bool
	}{
		{bob, "bob", "home/bob/light", true, true},
		{bob, "bob", "home/alice/light", false, false},
		{alice, "alice", "shared/news", false, true},
	} {
		if got := pubCode(t, c.who, c.topic); (got < 0x80) != c.pubOK {
			t.Errorf("%s publish %s: %#x", c.name, c.topic, got)
		}
		if got := subCode(t, c.who, c.topic); (got < 0x80) != c.subOK {
			t.Errorf("%s subscribe %s: %#x", c.name, c.topic, got)
		}
	}
}

// TestGoAuthSpecialChars: auth_plugin_deny_special_chars (default true)
// refuses every topic to a client whose username holds '+' or '#' before
// go-auth is asked, as mosquitto does for an auth_plugin; false asks it.
func TestGoAuthSpecialChars(t *testing.T) {
	for _, deny := range []bool{true, false} {
		t.Run(fmt.Sprint("deny=", deny), func(t *testing.T) {
			dir := t.TempDir()
			pw, acl := filepath.Join(dir, "pw"), filepath.Join(dir, "acl")
			writeFile(t, pw, "b+b:"+goauth.HashPBKDF2("pw", []byte("0123456789abcdef"), 1000)+"\n")
			writeFile(t, acl, "user b+b\ntopic readwrite x/#\n")
			port := freePort(t)
			addr := "127.0.0.1:" + strconv.Itoa(port)
			conf := filepath.Join(dir, "mosquitto.conf")
			writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nauth_plugin /mosquitto/go-auth.so\nauth_opt_backends files\n"+
				"auth_opt_password_path %s\nauth_opt_acl_path %s\nauth_plugin_deny_special_chars %v\n", port, pw, acl, deny))
			startMidge(t, addr, "-c", conf)
			c, code := dial(t, addr, codec.Version5, "c1", "b+b", "pw", false)
			if code != 0 {
				t.Fatalf("CONNACK %#x", code)
			}
			got := pubCode(t, c, "x/1")
			if want := map[bool]byte{true: codec.NotAuthorized, false: 0}[deny]; got != want && !(want == 0 && got == codec.NoMatchingSubscribers) {
				t.Fatalf("publish x/1: %#x, want %#x", got, want)
			}
		})
	}
}
