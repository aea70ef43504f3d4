package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"github.com/midge-mqtt/midge/bench"
)

// The connpin scenario measures what a connect costs the broker when the
// load generator cannot hide it: the generator runs on one core and the
// broker on the other (taskset), so neither steals the other's cycles and
// the broker's CPU per connect is its own. The generator is `midge bench
// conns` in a child process, since affinity is per thread and the harness
// runs many.
const (
	generatorCore = 0
	brokerCore    = 1
)

// pinnedCommand runs a broker command on one core.
func pinnedCommand(cmd string, core int) string {
	return "taskset -c " + strconv.Itoa(core) + " " + cmd
}

// runPinned runs the conns scenario from a generator pinned to its core.
func runPinned(ctx context.Context, o options, c bench.Config) (*bench.Result, error) {
	args := []string{"-c", strconv.Itoa(generatorCore), o.midge, "bench", "conns",
		"-p", strconv.Itoa(c.Port), "-pid", strconv.Itoa(c.BrokerPID), "-c", strconv.Itoa(c.Conns),
		"-d", time.Second.String(), "-loops", "1", "-json", "-progress", "off"}
	cmd := exec.CommandContext(ctx, "taskset", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var rs []*bench.Result
	if jerr := json.Unmarshal(stdout.Bytes(), &rs); jerr != nil || len(rs) != 1 {
		return nil, fmt.Errorf("connpin: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return rs[0], err
}
