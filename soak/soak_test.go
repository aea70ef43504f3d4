package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildMidge builds the broker once per test binary.
func buildMidge(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "midge")
	if out, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSoakShort is the 2-minute soak that `make test` runs: every guarantee
// of the hour-long one, against a spawned midge with persistence, but with
// 100 clients instead of 1,000 (under -race on two shared cores the load
// generator, not the broker, would be the bottleneck) and more churn (a
// client stays about 20 s between disconnects), so that every kind of event
// happens many times in two minutes. The levelling rule needs a longer run
// and is reported, not enforced.
func TestSoakShort(t *testing.T) {
	bin := buildMidge(t)
	var out bytes.Buffer
	o := options{midge: bin, out: t.TempDir(), name: "soak", enforce: "no", dir: t.TempDir(),
		cfg: config{duration: 2 * time.Minute, clients: 100, rate: 60, payload: 100, online: 20 * time.Second, sample: 5 * time.Second, seed: uint64(time.Now().UnixNano())}}
	code, s, err := soakRun(o, &out)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(o.out, "soak.md"))
	if code != 0 {
		t.Fatalf("soak failed (seed %d):\n%s\n%s", o.cfg.seed, out.String(), md)
	}
	// The run must have exercised what it claims to check.
	c := s.chk
	for _, x := range []struct {
		what string
		n    int64
	}{
		{"QoS 0 deliveries", c.qos[0].delivered.Load()},
		{"QoS 1 deliveries", c.qos[1].delivered.Load()},
		{"QoS 2 deliveries", c.qos[2].delivered.Load()},
		{"required QoS 1/2 messages checked", c.qos[1].required.Load() + c.qos[2].required.Load()},
		{"retained checks", c.retainChecks.Load()},
		{"wills judged", c.willsOK.Load()},
		{"disconnects", s.churns.Load()},
		{"takeovers", s.takeovers.Load()},
	} {
		if x.n == 0 {
			t.Errorf("no %s in two minutes:\n%s", x.what, md)
		}
	}
	if !strings.Contains(string(md), "Result: every guarantee kept") {
		t.Errorf("report:\n%s", md)
	}
}

// TestSoakDetectsLoss runs a short soak against a broker whose queue limit
// (max_queued_messages 2) makes it drop QoS 1/2 messages for persistent
// sessions while they are offline: the checker must see the losses and the
// run must fail.
func TestSoakDetectsLoss(t *testing.T) {
	bin := buildMidge(t)
	var out bytes.Buffer
	o := options{midge: bin, out: t.TempDir(), name: "soak", enforce: "no", dir: t.TempDir(), set: []string{"max_queued_messages 2"},
		cfg: config{duration: 40 * time.Second, clients: 60, rate: 60, payload: 50, online: 8 * time.Second, sample: 5 * time.Second, seed: 7}}
	code, _, err := soakRun(o, &out)
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 || !strings.Contains(out.String(), "-loss") {
		t.Fatalf("a broker that drops QoS 1/2 messages passed the soak:\n%s", out.String())
	}
	t.Logf("%s", out.String()[strings.LastIndex(out.String(), "soak: FAILED"):])
}
