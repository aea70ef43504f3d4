package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
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
	return benchProcess(ctx, exec.CommandContext(ctx, "taskset", args...))
}

// benchProcess runs cmd, a `midge bench ... -json` of one scenario, and
// returns its result.
func benchProcess(ctx context.Context, cmd *exec.Cmd) (*bench.Result, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var rs []*bench.Result
	if jerr := json.Unmarshal(stdout.Bytes(), &rs); jerr != nil || len(rs) != 1 {
		return nil, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args[:min(3, len(cmd.Args))], " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	if rs[0].Error != "" {
		return rs[0], fmt.Errorf("bench: %s", rs[0].Error)
	}
	return rs[0], err
}
