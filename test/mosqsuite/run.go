package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type outcome string

const (
	pass     outcome = "pass"
	fail     outcome = "FAIL"
	timedOut outcome = "TIMEOUT"
	skipped  outcome = "skip"
)

type test struct {
	name  string
	ports int    // how many ports the test takes on its command line
	skip  string // why it cannot run here, or ""
}

type result struct {
	outcome outcome
	output  string
	took    time.Duration
	alone   bool // failed among others, passed when run again alone
}

var (
	testListRow = regexp.MustCompile(`\(\s*(\d+)\s*,\s*'\./(\d\d-[A-Za-z0-9_.-]+\.py)'`)
	// Tests that load a plugin or start a client built from the tree's C
	// sources (test/broker/c), which this runner does not build.
	needsC = regexp.MustCompile(`['" ]c/[A-Za-z0-9_%.-]+\.(so|test)\b`)
)

// loadTests reads the tree's own list of broker tests (test/broker/test.py,
// with the number of ports each takes) and marks those that need C parts.
func loadTests(dir string) ([]test, error) {
	b, err := os.ReadFile(filepath.Join(dir, "test.py"))
	if err != nil {
		return nil, err
	}
	var tests []test
	for _, m := range testListRow.FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.Atoi(m[1])
		src, err := os.ReadFile(filepath.Join(dir, m[2]))
		if errors.Is(err, os.ErrNotExist) {
			continue // listed upstream but not shipped in this tree
		} else if err != nil {
			return nil, err
		}
		t := test{name: m[2], ports: n}
		if needsC.Match(src) {
			t.skip = "needs a plugin or client built from test/broker/c"
		}
		tests = append(tests, t)
	}
	if len(tests) == 0 {
		return nil, fmt.Errorf("no tests listed in %s/test.py", dir)
	}
	return tests, nil
}

type runner struct {
	dir, wrapper, broker string
	timeout              time.Duration
	logDir               string

	mu    sync.Mutex
	inUse map[int]bool // ports handed to running tests
	next  int          // where the search for a free port goes on
}

func (r *runner) runAll(tests []test, jobs int) map[string]result {
	r.inUse = make(map[int]bool)
	r.next = os.Getpid() % portSpan // two runs at once start apart
	_ = os.MkdirAll(r.logDir, 0o755)
	results := make(map[string]result, len(tests))
	var mu sync.Mutex
	work := make(chan test)
	var wg sync.WaitGroup
	for i := 0; i < jobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				res := r.runOne(t)
				mu.Lock()
				results[t.name] = res
				mu.Unlock()
			}
		}()
	}
	for _, t := range tests {
		work <- t
	}
	close(work)
	wg.Wait()
	return results
}

// freePorts finds n ports that nothing listens on, distinct from those of
// the tests still running. They come from below the kernel's ephemeral
// range (32768 and up by default), so that the many client connections the
// tests open cannot take one between this check and the broker's bind.
func (r *runner) freePorts(n int) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > portSpan {
			return nil, fmt.Errorf("no free port in %d..%d", portBase, portBase+portSpan)
		}
		p := portBase + r.next%portSpan
		r.next++
		if r.inUse[p] || !bindable(p) {
			continue
		}
		r.inUse[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

const portBase, portSpan = 20000, 10000

// cleanTmp removes what an earlier run of test left in /tmp (its
// configuration and persistence files are named after it there) and the
// persistence files it names after itself in the tests' own directory
// (06-bridge-reconnect-local-out writes its .db there and never removes
// it: midge refused the store mosquitto's run had left), so that one
// broker's leftovers never decide another's result.
func cleanTmp(dir, name string) {
	base := strings.TrimSuffix(name, ".py")
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), base+".*"))
	more, _ := filepath.Glob(filepath.Join(os.TempDir(), base+"_*"))
	dbs, _ := filepath.Glob(filepath.Join(dir, base+"*.db"))
	stores, _ := filepath.Glob(filepath.Join(dir, base+"*.db.d")) // midge's store beside its file
	for _, m := range append(append(append(matches, more...), dbs...), stores...) {
		_ = os.RemoveAll(m)
	}
}

// bindable reports whether p is free on every address a broker may bind.
func bindable(p int) bool {
	for _, addr := range []string{"0.0.0.0", "[::]"} {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", addr, p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

func (r *runner) release(ports []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ports {
		delete(r.inUse, p)
	}
}

func (r *runner) runOne(t test) result {
	if t.skip != "" {
		return result{outcome: skipped, output: t.skip}
	}
	ports, err := r.freePorts(t.ports)
	if err != nil {
		return result{outcome: fail, output: err.Error()}
	}
	defer r.release(ports)
	cleanTmp(r.dir, t.name)
	args := []string{"./" + t.name}
	for _, p := range ports {
		args = append(args, strconv.Itoa(p))
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "MOSQ_SUITE_BROKER="+r.broker, "PYTHONDONTWRITEBYTECODE=1")
	// Own process group: a timeout or a test that leaves its broker running
	// is cleaned up by killing the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	res := result{outcome: pass, output: buf.String(), took: time.Since(start)}
	switch {
	case ctx.Err() != nil:
		res.outcome = timedOut
	case err != nil:
		res.outcome = fail
	}
	_ = os.WriteFile(filepath.Join(r.logDir, t.name+".log"),
		[]byte(fmt.Sprintf("%s %s in %s\n%s", t.name, res.outcome, res.took.Round(time.Millisecond), res.output)), 0o644)
	return res
}
