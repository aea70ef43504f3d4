package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/tools"
)

// safeBuffer is a bytes.Buffer written by one goroutine and read by another.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSubReconnects: midge sub, like mosquitto_sub, reconnects when the
// broker goes away; with -c (clean session off) it resumes its session
// across the restart of a persistent broker and gets what was queued for it
// meanwhile.
func TestSubReconnects(t *testing.T) {
	dir := t.TempDir()
	conf, addr := persistConfig(t, dir, "")
	cmd, out := startMidge(t, addr, "-c", conf)
	port := addr[strings.LastIndexByte(addr, ':')+1:]

	var subOut, subErr safeBuffer
	done := make(chan int, 1)
	go func() {
		done <- tools.Sub([]string{"-h", "127.0.0.1", "-p", port, "-t", "r/#", "-q", "1", "-c", "-i", "resumer",
			"-v", "-C", "2", "-W", "30"}, nil, &subOut, &subErr)
	}()
	waitFor(t, func() bool { return strings.Contains(out.String(), "as resumer") })
	pub := func(payload string) {
		m := dialMQ(t, addr, codec.Version311)
		m.connectOK("pub-" + payload)
		m.publish("r/x", payload, 1, 1, false)
		m.expect(codec.PUBACK)
	}
	pub("before")
	waitFor(t, func() bool { return strings.Contains(subOut.String(), "r/x before") })

	stopMidge(t, cmd, sigterm)
	_, out = startMidge(t, addr, "-c", conf)
	pub("while-away") // queued for the restored session if midge sub is not back yet
	select {
	case code := <-done:
		if code != 0 || subOut.String() != "r/x before\nr/x while-away\n" {
			t.Fatalf("midge sub: exit %d, out %q, err %q", code, subOut.String(), subErr.String())
		}
	case <-timeoutAfter(t, 20):
		t.Fatalf("midge sub did not get the second message: out %q, err %q\n%s", subOut.String(), subErr.String(), out.String())
	}
}

// timeoutAfter is a channel closed after secs seconds.
func timeoutAfter(t *testing.T, secs int) <-chan time.Time {
	t.Helper()
	return time.After(time.Duration(secs) * time.Second)
}
