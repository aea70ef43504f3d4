package bridge

import (
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/session"
)

func parseBridge(t *testing.T, text string) *config.Bridge {
	t.Helper()
	c, err := config.ParseReader("t.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return c.Bridges[0]
}

// TestRestartTimeout: restart_timeout N waits N seconds every time; BASE CAP
// draws "decorrelated jitter" delays between the base and the cap.
func TestRestartTimeout(t *testing.T) {
	b := session.NewBroker(session.DefaultOptions())
	constant := New(parseBridge(t, "connection a\naddress h\ntopic x\nrestart_timeout 3\n"), b, nil)
	for i := 0; i < 10; i++ {
		if d := constant.nextDelay(); d != 3*time.Second {
			t.Fatalf("constant: %v", d)
		}
	}
	jitter := New(parseBridge(t, "connection a\naddress h\ntopic x\n"), b, nil) // mosquitto's default: 5 30
	seen := map[time.Duration]bool{}
	reachedCap := false
	for i := 0; i < 1000; i++ {
		d := jitter.nextDelay()
		if d < 5*time.Second || d > 30*time.Second {
			t.Fatalf("jitter delay %v outside [5s, 30s]", d)
		}
		seen[d] = true
		reachedCap = reachedCap || d == 30*time.Second
	}
	if len(seen) < 100 || !reachedCap {
		t.Fatalf("%d distinct delays, cap reached %v", len(seen), reachedCap)
	}
}

// TestFallbacks: a remote that refuses MQTT 5, and then the bridge bit of
// try_private, is reached with 3.1.1 without it, as mosquitto retries.
func TestFallbacks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var levels []byte
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(conn net.Conn) {
				defer conn.Close()
				buf := make([]byte, 256)
				n, _ := io.ReadAtLeast(conn, buf, 9)
				if n < 9 {
					return
				}
				level := buf[8] // fixed header (2), name length (2), "MQTT" (4)
				mu.Lock()
				levels = append(levels, level)
				mu.Unlock()
				if level != codec.Version311 {
					conn.Write([]byte{0x20, 2, 0, codec.ConnRefusedProtocolVersion})
					return
				}
				conn.Write([]byte{0x20, 2, 0, 0})
				io.Copy(io.Discard, conn)
			}(conn)
		}
	}()
	cfg := parseBridge(t, fmt.Sprintf("connection a\naddress %s\nbridge_protocol_version mqttv50\nbridge_attempt_unsubscribe false\n"+
		"notifications false\ntopic x out\n", ln.Addr()))
	br := New(cfg, session.NewBroker(session.DefaultOptions()), log.New(testWriter{t}, "", 0))
	if err := br.Start(); err != nil {
		t.Fatal(err)
	}
	defer br.Stop(true)
	deadline := time.Now().Add(10 * time.Second)
	for !br.Stats.Connected.Load() {
		if time.Now().After(deadline) {
			t.Fatal("never connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if string(levels) != string([]byte{5, 0x84, 4}) {
		t.Fatalf("protocol levels tried: % x, want 05 84 04", levels)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
