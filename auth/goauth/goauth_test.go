package goauth

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/session"
)

// authService is a go-auth HTTP service on loopback that records what it
// was asked and answers with answer(path, fields).
type authService struct {
	srv    *httptest.Server
	mu     sync.Mutex
	asked  []string // "path field=value ..." in order
	calls  atomic.Int32
	answer func(path string, f map[string]string) (status int, body string)
}

func newService(t *testing.T, answer func(path string, f map[string]string) (int, string)) *authService {
	s := &authService{answer: answer}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		f := map[string]string{}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			var m map[string]any
			b, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(b, &m); err != nil {
				t.Errorf("body %q: %v", b, err)
			}
			for k, v := range m {
				switch v := v.(type) {
				case string:
					f[k] = v
				case float64:
					f[k] = strings.TrimSuffix(strings.TrimSuffix(json.Number(jsonNum(v)).String(), ".0"), ".")
				}
			}
		} else {
			_ = r.ParseForm()
			for k := range r.PostForm {
				f[k] = r.PostForm.Get(k)
			}
		}
		var keys []string
		for _, k := range []string{"username", "password", "clientid", "topic", "acc"} {
			if v, ok := f[k]; ok {
				keys = append(keys, k+"="+v)
			}
		}
		s.mu.Lock()
		s.asked = append(s.asked, r.URL.Path+" "+strings.Join(keys, " "))
		s.mu.Unlock()
		status, body := answer(r.URL.Path, f)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func jsonNum(v float64) string { b, _ := json.Marshal(v); return string(b) }

func (s *authService) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

func (s *authService) opts(extra ...string) ([]string, func(string) (string, bool)) {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.srv.URL, "http://"))
	m := map[string]string{"backends": "http", "http_host": "127.0.0.1", "http_port": port,
		"http_getuser_uri": "/user", "http_superuser_uri": "/superuser", "http_aclcheck_uri": "/acl"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	var names []string
	for k := range m {
		names = append(names, k)
	}
	return names, func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func (s *authService) provider(t testing.TB, extra ...string) *Provider {
	t.Helper()
	names, opt := s.opts(extra...)
	return newProvider(t, names, opt)
}

func newProvider(t testing.TB, names []string, opt func(string) (string, bool)) *Provider {
	t.Helper()
	p, err := New(names, opt)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// syncAsk runs a question as a loop would, waiting for a parked answer the
// way the transport does, then asking again.
func login(p *Provider, user, pass, id string) (auth.Result, byte) {
	l := &auth.Login{ClientID: id, Username: []byte(user), Password: []byte(pass), HasUsername: true, HasPassword: true}
	return p.Authenticate(l, nil)
}

// TestHTTPContract: the requests go-auth's http backend makes, and how each
// answer is read.
func TestHTTPContract(t *testing.T) {
	for _, tc := range []struct {
		name, mode, params string
		status             int
		body               string
		want               auth.Result
	}{
		{"status 200", "status", "json", 200, "", auth.Allow},
		{"status 403", "status", "json", 403, "", auth.Deny},
		{"status 500 is an error", "status", "json", 500, "", auth.Error},
		{"json ok", "json", "json", 200, `{"ok":true,"error":""}`, auth.Allow},
		{"json not ok", "json", "json", 200, `{"ok":false,"error":"no"}`, auth.Deny},
		{"json garbage is an error", "json", "json", 200, `nope`, auth.Error},
		{"text ok", "text", "form", 200, "ok", auth.Allow},
		{"text other", "text", "form", 200, "denied", auth.Deny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newService(t, func(string, map[string]string) (int, string) { return tc.status, tc.body })
			p := s.provider(t, "http_response_mode", tc.mode, "http_params_mode", tc.params)
			if r, _ := p.askBlocking(t, "alice", "pw", "c1"); r != tc.want {
				t.Fatalf("getuser: %d, want %d", r, tc.want)
			}
			if got := s.log(); len(got) != 1 || got[0] != "/user username=alice password=pw clientid=c1" {
				t.Fatalf("asked %q", got)
			}
		})
	}
}

// askBlocking answers a CONNECT through a Ticket, as the loop does.
func (p *Provider) askBlocking(t testing.TB, user, pass, id string) (auth.Result, byte) {
	w := newParkedClient(t)
	l := &auth.Login{ClientID: id, Username: []byte(user), Password: []byte(pass), HasUsername: true, HasPassword: true}
	for i := 0; i < 3; i++ {
		r, code := p.Authenticate(l, w)
		if r != auth.Pending {
			return r, code
		}
		select {
		case <-w.TicketDone():
		case <-time.After(10 * time.Second):
			t.Fatal("no answer")
		}
	}
	t.Fatal("still pending")
	return 0, 0
}

func (p *Provider) checkBlocking(t testing.TB, user, id, topic string, acc session.Access) auth.Result {
	w := newParkedClient(t)
	ci := &session.ClientInfo{ClientID: id, Username: user, HasUsername: true}
	for i := 0; i < 3; i++ {
		r := p.Check(ci, topic, acc, w)
		if r != auth.Pending {
			return r
		}
		<-w.TicketDone()
	}
	t.Fatal("still pending")
	return 0
}

type nopTransport struct{}

func (nopTransport) Wake()              {}
func (nopTransport) Close()             {}
func (nopTransport) RemoteAddr() string { return "test" }

func newParkedClient(t testing.TB) *session.Client {
	b := session.NewBroker(session.DefaultOptions())
	return b.NewClient(nopTransport{}, nil)
}

// TestACLSuperuserFirst: superuser is asked before the ACL; acc is 1 read,
// 2 write, 4 subscribe; unsubscribing is not asked.
func TestACLSuperuserFirst(t *testing.T) {
	s := newService(t, func(path string, f map[string]string) (int, string) {
		if path == "/superuser" {
			if f["username"] == "root" {
				return 200, ""
			}
			return 403, ""
		}
		if f["topic"] == "ok/1" {
			return 200, ""
		}
		return 403, ""
	})
	p := s.provider(t)
	for _, c := range []struct {
		user, topic string
		acc         session.Access
		want        auth.Result
	}{
		{"bob", "ok/1", session.AccessRead, auth.Allow},
		{"bob", "ok/1", session.AccessWrite, auth.Allow},
		{"bob", "no", session.AccessSubscribe, auth.Deny},
		{"root", "anything", session.AccessWrite, auth.Allow},
		{"bob", "x", session.AccessUnsubscribe, auth.Allow},
		{"bo+b", "ok/1", session.AccessRead, auth.Deny}, // special characters: refused unasked
	} {
		if got := p.checkBlocking(t, c.user, "cid", c.topic, c.acc); got != c.want {
			t.Errorf("%s %s %d: %d, want %d", c.user, c.topic, c.acc, got, c.want)
		}
	}
	want := []string{
		"/superuser username=bob", "/acl username=bob clientid=cid topic=ok/1 acc=1",
		"/superuser username=bob", "/acl username=bob clientid=cid topic=ok/1 acc=2",
		"/superuser username=bob", "/acl username=bob clientid=cid topic=no acc=4",
		"/superuser username=root",
	}
	if got := s.log(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("asked:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestHTTPFailures: a slow service is bounded by http_timeout, a 500 is
// retried retry_count times, a service that is down is an error; errors
// are never cached, answers are.
func TestHTTPFailures(t *testing.T) {
	t.Run("slow", func(t *testing.T) {
		s := newService(t, func(string, map[string]string) (int, string) { time.Sleep(1500 * time.Millisecond); return 200, "" })
		p := s.provider(t, "http_timeout", "1")
		start := time.Now()
		if r, code := p.askBlocking(t, "u", "p", "c"); r != auth.Error || code != 0x88 {
			t.Fatalf("slow: %d %#x", r, code)
		}
		if d := time.Since(start); d < time.Second || d > 1400*time.Millisecond {
			t.Fatalf("answered after %v, want the 1 s timeout", d)
		}
	})
	t.Run("500 retried, not cached", func(t *testing.T) {
		s := newService(t, func(string, map[string]string) (int, string) { return 500, "" })
		p := s.provider(t, "retry_count", "2", "cache", "true")
		for i := 0; i < 2; i++ {
			if r, _ := p.askBlocking(t, "u", "p", "c"); r != auth.Error {
				t.Fatalf("500: %d", r)
			}
		}
		if n := s.calls.Load(); n != 6 {
			t.Fatalf("%d requests, want 2 × (1 + 2 retries)", n)
		}
	})
	t.Run("down", func(t *testing.T) {
		s := newService(t, func(string, map[string]string) (int, string) { return 200, "" })
		names, opt := s.opts()
		s.srv.Close()
		p := newProvider(t, names, opt)
		if r, _ := p.askBlocking(t, "u", "p", "c"); r != auth.Error {
			t.Fatalf("down: %d", r)
		}
	})
	t.Run("grants and denials cached", func(t *testing.T) {
		s := newService(t, func(_ string, f map[string]string) (int, string) {
			if f["password"] == "good" {
				return 200, ""
			}
			return 401, ""
		})
		p := s.provider(t, "cache", "true")
		for i := 0; i < 3; i++ {
			if r, _ := p.askBlocking(t, "u", "good", "c"); r != auth.Allow {
				t.Fatal("good")
			}
			if r, _ := p.askBlocking(t, "u", "bad", "c"); r != auth.Deny {
				t.Fatal("bad")
			}
		}
		if n := s.calls.Load(); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
	})
	t.Run("no username, no request", func(t *testing.T) {
		s := newService(t, func(string, map[string]string) (int, string) { return 200, "" })
		p := s.provider(t)
		r, _ := p.Authenticate(&auth.Login{ClientID: "c", Username: []byte("u"), HasUsername: true}, newParkedClient(t))
		r2, _ := p.Authenticate(&auth.Login{ClientID: "c"}, newParkedClient(t))
		if r != auth.Deny || r2 != auth.Deny || s.calls.Load() != 0 {
			t.Fatalf("%d %d, %d requests", r, r2, s.calls.Load())
		}
	})
}

// TestFilesBackend: go-auth's hashes and ACL rules.
func TestFilesBackend(t *testing.T) {
	dir := t.TempDir()
	bc, _ := bcrypt.GenerateFromPassword([]byte("bpw"), bcrypt.MinCost)
	pw := "alice:" + HashPBKDF2("apw", []byte("0123456789abcdef"), 1000) + "\n" +
		"bob:" + string(bc) + "\n" +
		// go-auth's own test vector form: pbkdf2-sha512$i=...,l=...$salt$key
		"carol:" + pbkdf2Form("cpw") + "\n"
	acl := "topic read general/#\npattern readwrite users/%u/#\nuser alice\ntopic write alice/out\ntopic deny general/secret\ntopic subscribe sub/only\n"
	for name, text := range map[string]string{"pw": pw, "acl": acl} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := map[string]string{"backends": "files", "password_path": filepath.Join(dir, "pw"), "acl_path": filepath.Join(dir, "acl")}
	p := newProvider(t, []string{"backends", "password_path", "acl_path"}, func(k string) (string, bool) { v, ok := m[k]; return v, ok })
	for _, c := range []struct {
		user, pass string
		want       auth.Result
	}{{"alice", "apw", auth.Allow}, {"alice", "x", auth.Deny}, {"bob", "bpw", auth.Allow}, {"bob", "x", auth.Deny},
		{"carol", "cpw", auth.Allow}, {"nobody", "x", auth.Deny}} {
		if r, _ := login(p, c.user, c.pass, "c"); r != c.want {
			t.Errorf("%s/%s: %d, want %d", c.user, c.pass, r, c.want)
		}
	}
	for _, c := range []struct {
		user, topic string
		acc         session.Access
		want        auth.Result
	}{
		{"alice", "general/a", session.AccessRead, auth.Allow},
		{"alice", "general/a", session.AccessSubscribe, auth.Allow}, // read grants subscribe
		{"alice", "general/a", session.AccessWrite, auth.Deny},
		{"alice", "general/secret", session.AccessRead, auth.Deny}, // a deny wins
		{"bob", "general/secret", session.AccessRead, auth.Allow},
		{"alice", "alice/out", session.AccessWrite, auth.Allow},
		{"bob", "users/bob/x", session.AccessWrite, auth.Allow},
		{"bob", "users/alice/x", session.AccessWrite, auth.Deny},
		{"alice", "sub/only", session.AccessSubscribe, auth.Allow},
		{"alice", "sub/only", session.AccessRead, auth.Deny},
	} {
		ci := &session.ClientInfo{ClientID: "c", Username: c.user, HasUsername: true}
		if got := p.Check(ci, c.topic, c.acc, nil); got != c.want {
			t.Errorf("%s %s %d: %d, want %d", c.user, c.topic, c.acc, got, c.want)
		}
	}
}

func pbkdf2Form(pw string) string {
	h := HashPBKDF2(pw, []byte("saltsaltsaltsalt"), 500) // PBKDF2$sha512$500$SALT$KEY
	p := strings.Split(h, "$")
	raw := func(s string) string { return strings.TrimRight(s, "=") }
	return "pbkdf2-sha512$i=500,l=64$" + raw(p[3]) + "$" + raw(p[4])
}

// BenchmarkCachedPublishCheck is the publish path with a warm cache,
// through the chain as the session asks it: < 100 ns, no allocation.
func BenchmarkCachedPublishCheck(b *testing.B) {
	s := newService(&testing.T{}, func(string, map[string]string) (int, string) { return 200, "" })
	defer s.srv.Close()
	p := s.provider(b, "cache", "true", "http_superuser_uri", "")
	p.noSuperuser = true
	var stats session.Stats // counted as in the broker
	chain := auth.New(false, &stats, p)
	p.SetStats(&stats)
	w := newParkedClient(b)
	ci := &session.ClientInfo{ClientID: "c", Username: "u", HasUsername: true}
	if r := p.checkBlocking(b, "u", "c", "sensors/1/temp", session.AccessWrite); r != auth.Allow {
		b.Fatal(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if chain.Ask(w, ci, "sensors/1/temp", session.AccessWrite) != session.Allowed {
			b.Fatal("denied")
		}
	}
}

var _ = context.Background

// TestDeliveryMiss: a delivery cannot wait for the service: a read check
// the cache cannot answer refuses that message and fetches the answer, so
// the next message on that topic is answered from the cache.
func TestDeliveryMiss(t *testing.T) {
	s := newService(t, func(path string, f map[string]string) (int, string) {
		if path == "/superuser" {
			return 403, ""
		}
		return 200, ""
	})
	p := s.provider(t, "cache", "true")
	ci := &session.ClientInfo{ClientID: "c", Username: "u", HasUsername: true}
	if r := p.Check(ci, "a/b", session.AccessRead, nil); r != auth.Deny {
		t.Fatalf("first delivery: %d, want refused", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Check(ci, "a/b", session.AccessRead, nil) != auth.Allow {
		if time.Now().After(deadline) {
			t.Fatal("the answer was never fetched")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A literal subscription fetches its read answer when it subscribes.
	if r := p.checkBlocking(t, "u", "c", "lit/1", session.AccessSubscribe); r != auth.Allow {
		t.Fatalf("subscribe: %d", r)
	}
	if r := p.Check(ci, "lit/1", session.AccessRead, nil); r != auth.Allow {
		t.Fatalf("first delivery on a literal subscription: %d", r)
	}
}

// BenchmarkCachedPublishCheckParallel: every loop checks its own clients'
// publishes at once, as on a broker with one loop per core.
func BenchmarkCachedPublishCheckParallel(b *testing.B) {
	s := newService(&testing.T{}, func(string, map[string]string) (int, string) { return 200, "" })
	defer s.srv.Close()
	p := s.provider(b, "cache", "true", "http_superuser_uri", "")
	p.noSuperuser = true
	var stats session.Stats
	chain := auth.New(false, &stats, p)
	p.SetStats(&stats)
	ci := &session.ClientInfo{ClientID: "c", Username: "u", HasUsername: true}
	if r := p.checkBlocking(b, "u", "c", "sensors/1/temp", session.AccessWrite); r != auth.Allow {
		b.Fatal(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := newParkedClient(b)
		for pb.Next() {
			if chain.Ask(w, ci, "sensors/1/temp", session.AccessWrite) != session.Allowed {
				b.Fatal("denied")
			}
		}
	})
}

// TestHTTPWithTLS: http_with_tls asks over HTTPS; the service's certificate
// is checked only with http_verify_peer true, as in go-auth (here it is
// self-signed, so checking it fails: an error, never a grant).
func TestHTTPWithTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	for _, c := range []struct {
		verify string
		want   auth.Result
	}{{"false", auth.Allow}, {"true", auth.Error}} {
		m := map[string]string{"backends": "http", "http_host": "127.0.0.1", "http_port": port,
			"http_getuser_uri": "/user", "http_aclcheck_uri": "/acl", "http_with_tls": "true", "http_verify_peer": c.verify}
		var names []string
		for k := range m {
			names = append(names, k)
		}
		p := newProvider(t, names, func(k string) (string, bool) { v, ok := m[k]; return v, ok })
		if r, _ := p.askBlocking(t, "u", "p", "c"); r != c.want {
			t.Errorf("verify_peer %s: %d, want %d", c.verify, r, c.want)
		}
	}
}

// TestFormParams: http_params_mode form posts the same fields as a form.
func TestFormParams(t *testing.T) {
	s := newService(t, func(path string, _ map[string]string) (int, string) {
		if path == "/superuser" {
			return 403, ""
		}
		return 200, ""
	})
	p := s.provider(t, "http_params_mode", "form")
	if r := p.checkBlocking(t, "u", "c", "t/1", session.AccessWrite); r != auth.Allow {
		t.Fatalf("form: %d", r)
	}
	want := []string{"/superuser username=u", "/acl username=u clientid=c topic=t/1 acc=2"}
	if got := s.log(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("asked %q, want %q", got, want)
	}
}
