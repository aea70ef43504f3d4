// Package examples builds each example program and runs it against a
// broker in this process, driven by a real client.
package examples

import (
	"bytes"
	"context"
	"io"
	"log"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/session"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func broker(t *testing.T) string {
	t.Helper()
	o := session.DefaultOptions()
	o.Logger = log.New(io.Discard, "", 0)
	srv := loop.New(session.NewBroker(o), loop.Config{Listeners: []string{"127.0.0.1:0"}, Loops: 2, Logger: o.Logger})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv.Addrs()[0].String()
}

// build compiles the package at dir (relative to examples/) into a temporary file.
func build(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Base(dir)
	if name == ".." {
		name = "midge"
	}
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", dir, err, out)
	}
	return bin
}

// start runs bin with args until the test ends, and waits until its log
// says ready.
func start(t *testing.T, ready string, bin string, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	var out lockedBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), ready) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not say %q:\n%s", bin, ready, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, &out
}

func connect(t *testing.T, ctx context.Context, o client.Options) *client.Client {
	t.Helper()
	c := client.New(o)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTemperature: readings in Celsius come back in Fahrenheit; a reading
// that is not a number is skipped.
func TestTemperature(t *testing.T) {
	addr := broker(t)
	bin := build(t, "./temperature")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 8)
	sub := connect(t, ctx, client.Options{Addr: addr, ClientID: "reader", CleanStart: true})
	sub.OnMessage = func(m *client.Message) { got <- string(m.Payload) }
	if _, err := sub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("temperature/fahrenheit"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	cmd, _ := start(t, "converting", bin, "-addr", addr, "-count", "3")
	pub := connect(t, ctx, client.Options{Addr: addr, ClientID: "sensor", CleanStart: true})
	for _, r := range []string{"21.5", "warm", "-40", "100"} {
		if err := pub.Publish(ctx, &client.Message{Topic: []byte("temperature/celsius"), Payload: []byte(r), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"70.7", "-40.0", "212.0"} {
		select {
		case g := <-got:
			if g != want {
				t.Fatalf("got %q, want %q", g, want)
			}
		case <-ctx.Done():
			t.Fatalf("no %s °F", want)
		}
	}
	if err := cmd.Wait(); err != nil { // -count 3: it stops by itself
		t.Fatalf("temperature: %v", err)
	}
}

// TestRequestResponse: replies go to each request's Response Topic with
// its Correlation Data [MQTT-4.10], to a v5 client with two requests in
// flight and to `midge rr`.
func TestRequestResponse(t *testing.T) {
	addr := broker(t)
	bin := build(t, "./rrservice")
	midge := build(t, "..")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start(t, "serving", bin, "-addr", addr)

	type reply struct{ payload, corr string }
	got := make(chan reply, 4)
	req := connect(t, ctx, client.Options{Addr: addr, Version: codec.Version5, ClientID: "requester", CleanStart: true})
	req.OnMessage = func(m *client.Message) { got <- reply{string(m.Payload), string(m.Props.CorrelationData)} }
	if _, err := req.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("replies/requester"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []reply{{"first", "id-1"}, {"second", "id-2"}} {
		props := &codec.Properties{ResponseTopic: []byte("replies/requester"), CorrelationData: []byte(r.corr)}
		props.Set(codec.PropResponseTopic)
		props.Set(codec.PropCorrelationData)
		if err := req.Publish(ctx, &client.Message{Topic: []byte("service/upper"), Payload: []byte(r.payload), QoS: 1, Props: props}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[reply]bool{{"FIRST", "id-1"}: true, {"SECOND", "id-2"}: true}
	for range 2 {
		select {
		case g := <-got:
			if !want[g] {
				t.Fatalf("reply %+v, want one of %v", g, want)
			}
			delete(want, g)
		case <-ctx.Done():
			t.Fatalf("replies missing: %v", want)
		}
	}

	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.CommandContext(ctx, midge, "rr", "-h", host, "-p", port, "-t", "service/upper", "-e", "replies/rr", "-m", "hello", "-W", "10").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "HELLO" {
		t.Fatalf("midge rr: %v, %q; want HELLO", err, out)
	}
}

// TestLogger: every message the filter matches lands in the SQLite file,
// and -query reads them back by filter.
func TestLogger(t *testing.T) {
	addr := broker(t)
	bin := build(t, "./logger")
	db := filepath.Join(t.TempDir(), "messages.db")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, _ := start(t, "logging", bin, "-addr", addr, "-db", db, "-t", "sensors/#", "-count", "4")
	pub := connect(t, ctx, client.Options{Addr: addr, ClientID: "sensor", CleanStart: true})
	msgs := []struct {
		topic, payload string
		qos            byte
	}{{"sensors/a/t", "21.5", 0}, {"sensors/b/t", "19", 1}, {"other/x", "not logged", 1}, {"sensors/a/h", "40%", 2}, {"sensors/a/t", "22.0", 1}}
	for _, m := range msgs {
		if err := pub.Publish(ctx, &client.Message{Topic: []byte(m.topic), Payload: []byte(m.payload), QoS: m.qos}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Wait(); err != nil { // -count 4: it stops once all are stored
		t.Fatalf("logger: %v", err)
	}
	for _, c := range []struct{ filter, want string }{
		{"#", "sensors/a/t 21.5\nsensors/b/t 19\nsensors/a/h 40%\nsensors/a/t 22.0\n"},
		{"sensors/a/+", "sensors/a/t 21.5\nsensors/a/h 40%\nsensors/a/t 22.0\n"},
		{"sensors/+/t", "sensors/a/t 21.5\nsensors/b/t 19\nsensors/a/t 22.0\n"},
		{"other/#", ""},
	} {
		out, err := exec.Command(bin, "-db", db, "-query", c.filter).CombinedOutput()
		if err != nil || string(out) != c.want {
			t.Errorf("-query %s: %v\n%q\nwant %q", c.filter, err, out, c.want)
		}
	}
}
