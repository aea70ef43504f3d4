// Package cross runs midge built for small boards (linux/arm64, linux/arm
// v7 and v6, linux/riscv64 and linux/mipsle softfloat: every target of
// `make cross`) under Debian's qemu-user, and passes messages through it
// from the host: QoS 0, 1 and 2 and a retained message.
package cross

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
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

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestQemuRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name, qemu string
		env        []string
	}{
		{"arm64", "qemu-aarch64", []string{"GOARCH=arm64"}},
		{"armv7", "qemu-arm", []string{"GOARCH=arm", "GOARM=7"}},
		{"armv6", "qemu-arm", []string{"GOARCH=arm", "GOARM=6"}},
		{"riscv64", "qemu-riscv64", []string{"GOARCH=riscv64"}},
		{"mipsle", "qemu-mipsel", []string{"GOARCH=mipsle", "GOMIPS=softfloat"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			qemu, err := exec.LookPath(c.qemu)
			if err != nil {
				t.Fatalf("%s not found: `make deps` installs Debian's qemu-user", c.qemu)
			}
			bin := filepath.Join(t.TempDir(), "midge-"+c.name)
			build := exec.Command("go", "build", "-tags", "nocluster", "-trimpath", "-ldflags", "-s -w", "-o", bin, "../..") // as make cross
			build.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), c.env...)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, out)
			}
			port := freePort(t)
			var out lockedBuffer
			cmd := exec.Command(qemu, bin, "-p", strconv.Itoa(port), "-v")
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					t.Error("midge under qemu did not stop on SIGTERM")
				}
				if t.Failed() {
					t.Logf("midge (%s) output:\n%s", c.name, out.String())
				}
			}()
			roundTrip(t, fmt.Sprintf("127.0.0.1:%d", port))
		})
	}
}

func roundTrip(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func(id string, v byte) *client.Client {
		c := client.New(client.Options{Addr: addr, ClientID: id, CleanStart: true, Version: v})
		for {
			err := c.Connect(ctx)
			if err == nil {
				t.Cleanup(func() { c.Close() })
				return c
			}
			if ctx.Err() != nil {
				t.Fatalf("connect %s: %v", id, err)
			}
			time.Sleep(100 * time.Millisecond) // qemu starts slowly
		}
	}
	type msg struct {
		topic, payload string
		qos            byte
		retain         bool
	}
	got := make(chan msg, 16)
	sub := dial("sub", codec.Version5)
	sub.OnMessage = func(m *client.Message) { got <- msg{string(m.Topic), string(m.Payload), m.QoS, m.Retain} }
	if _, err := sub.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("board/#"), QoS: 2}); err != nil {
		t.Fatal(err)
	}
	pub := dial("pub", codec.Version311)
	for q := byte(0); q <= 2; q++ {
		m := &client.Message{Topic: []byte(fmt.Sprintf("board/q%d", q)), Payload: []byte(fmt.Sprintf("reading %d", q)), QoS: q}
		if err := pub.Publish(ctx, m); err != nil {
			t.Fatalf("publish QoS %d: %v", q, err)
		}
		select {
		case g := <-got:
			if g != (msg{string(m.Topic), string(m.Payload), q, false}) {
				t.Fatalf("QoS %d: got %+v", q, g)
			}
		case <-ctx.Done():
			t.Fatalf("QoS %d message not delivered", q)
		}
	}
	if err := pub.Publish(ctx, &client.Message{Topic: []byte("board/state"), Payload: []byte("on"), QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	<-got // the live copy
	late := dial("late", codec.Version311)
	lateGot := make(chan msg, 1)
	late.OnMessage = func(m *client.Message) { lateGot <- msg{string(m.Topic), string(m.Payload), m.QoS, m.Retain} }
	if _, err := late.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("board/state"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-lateGot:
		// A retained message sent on subscription carries RETAIN [MQTT-3.3.1-8].
		if g != (msg{"board/state", "on", 1, true}) {
			t.Fatalf("retained: got %+v", g)
		}
	case <-ctx.Done():
		t.Fatal("retained message not sent to a new subscriber")
	}
}

// TestBoardBuildRefusals: what a board build leaves out is refused at start
// with the reason, never silently: cluster keys in a -tags nocluster build
// (make cross's), persistence on 32-bit MIPS (no store there).
func TestBoardBuildRefusals(t *testing.T) {
	for _, c := range []struct {
		name, qemu, conf, want string
		env                    []string
	}{
		{"nocluster", "", "cluster_nats_url nats://127.0.0.1:4222\n", "built without the cluster (-tags nocluster)", nil},
		{"mipsle persistence", "qemu-mipsel", "persistence true\npersistence_location %s/\n", "persistence is not available on 32-bit MIPS", []string{"GOARCH=mipsle", "GOMIPS=softfloat"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "midge")
			build := exec.Command("go", "build", "-tags", "nocluster", "-trimpath", "-o", bin, "../..")
			build.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), c.env...)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, out)
			}
			conf := filepath.Join(dir, "midge.conf")
			text := fmt.Sprintf("listener %d 127.0.0.1\n", freePort(t)) + strings.ReplaceAll(c.conf, "%s", dir)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			args := []string{bin, "-c", conf}
			if c.qemu != "" {
				qemu, err := exec.LookPath(c.qemu)
				if err != nil {
					t.Fatalf("%s not found: `make deps` installs Debian's qemu-user", c.qemu)
				}
				args = append([]string{qemu}, args...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Fatalf("err %v, output %q: want a refusal naming %q", err, out, c.want)
			}
		})
	}
}
