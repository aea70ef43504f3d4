package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCrashExactlyOnce runs a bounded number of kill -9 rounds (make crash
// runs hundreds) with MQTT 3.1.1 and 5 sessions: every message the
// publisher had acknowledged reaches the persistent subscriber, online or
// offline when the broker died; QoS 2 exactly once [MQTT-4.3.3-10]
// [MQTT-4.4.0-1], QoS 1 at least once [MQTT-4.3.2].
func TestCrashExactlyOnce(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "midge")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/midge-mqtt/midge").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, v5 := range []bool{false, true} {
		name := "v3.1.1"
		if v5 {
			name = "v5"
		}
		t.Run(name, func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			var log strings.Builder
			rep, err := run(config{bin: bin, dir: t.TempDir(), rounds: 15, seed: seed, v5: v5, log: &log})
			if rep != nil {
				t.Logf("seed %d:\n%s", seed, rep)
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			if rep.acked[1] == 0 || rep.acked[2] == 0 {
				t.Fatalf("nothing acknowledged at some QoS: the publisher never ran\n%s", log.String())
			}
			if !rep.ok() {
				t.Errorf("exactly once broken (rerun with go run ./test/crash -seed %d):\n%s", seed, log.String())
			}
		})
	}
}
