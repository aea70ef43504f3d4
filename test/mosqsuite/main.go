// Command mosqsuite runs mosquitto's own broker tests (test/broker/NN-*.py
// of a mosquitto source tree) against midge and against Debian's mosquitto,
// prints both columns and fails when midge fails a test that mosquitto
// passes unless docs/mosquitto-suite.md lists it. scripts/mosquitto-suite.sh
// fetches the tree and calls it; `make mosquitto-suite` calls the script.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	tree := flag.String("tree", "", "mosquitto source tree (holds test/broker)")
	midge := flag.String("midge", "bin/midge", "midge binary")
	mosq := flag.String("mosquitto", "/usr/sbin/mosquitto", "mosquitto binary")
	list := flag.String("list", "docs/mosquitto-suite.md", "tests allowed to fail on midge (first column of its tables)")
	brokers := flag.String("brokers", "mosquitto,midge", "which columns to run")
	run := flag.String("run", "", "only tests whose name matches this regexp")
	jobs := flag.Int("j", 4, "tests run at once")
	timeout := flag.Duration("timeout", 90*time.Second, "time limit per test")
	verbose := flag.Bool("v", false, "print the output of each test midge fails")
	minRef := flag.Int("min-mosquitto", 150, "fail when mosquitto itself passes fewer (a broken set-up, not a midge result)")
	flag.Parse()
	minReference = *minRef
	if err := mainErr(*tree, *midge, *mosq, *list, *brokers, *run, *jobs, *timeout, *verbose, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mosqsuite:", err)
		os.Exit(1)
	}
}

func mainErr(tree, midge, mosq, listPath, brokers, run string, jobs int, timeout time.Duration, verbose bool, out io.Writer) error {
	if tree == "" {
		return fmt.Errorf("-tree is required")
	}
	dir := filepath.Join(tree, "test", "broker")
	tests, err := loadTests(dir)
	if err != nil {
		return err
	}
	if run != "" {
		re, err := regexp.Compile(run)
		if err != nil {
			return fmt.Errorf("-run: %v", err)
		}
		kept := tests[:0]
		for _, t := range tests {
			if re.MatchString(t.name) {
				kept = append(kept, t)
			}
		}
		tests = kept
	}
	allowed, err := loadList(listPath)
	if err != nil {
		return err
	}
	wrapper, err := writeWrapper(tree)
	if err != nil {
		return err
	}
	// mosquitto started as root drops to user mosquitto; the tests have it
	// write persistence files beside them.
	if err := os.Chmod(dir, 0o1777); err != nil {
		return err
	}
	// So are the folders the tests make for them (the dynsec tests' PORT/,
	// where the plugin saves its file): with a umask of 022 the broker could
	// not write there, and both brokers failed those tests.
	syscall.Umask(0)
	bins := map[string]string{"mosquitto": mosq, "midge": midge}
	cols := strings.Split(brokers, ",")
	results := make(map[string]map[string]result)
	runners := make(map[string]*runner)
	logDir := filepath.Join(tree, "..", "logs")
	for _, col := range cols {
		bin, ok := bins[col]
		if !ok {
			return fmt.Errorf("-brokers: unknown broker %q", col)
		}
		abs, err := filepath.Abs(bin)
		if err != nil {
			return err
		}
		start := time.Now()
		fmt.Fprintf(out, "running %d tests against %s (%s), %d at once\n", len(tests), col, abs, jobs)
		r := &runner{dir: dir, wrapper: wrapper, broker: abs, timeout: timeout, logDir: filepath.Join(logDir, col)}
		runners[col] = r
		results[col] = r.runAll(tests, jobs)
		fmt.Fprintf(out, "%s: done in %s\n", col, time.Since(start).Round(time.Second))
		if err := saveResults(filepath.Join(logDir, col+".results"), results[col]); err != nil {
			return err
		}
	}
	// A column not run this time (e.g. -brokers midge while working on a
	// fix) is taken from the last run, marked as such.
	if _, ok := results["mosquitto"]; !ok {
		if r, err := loadResults(filepath.Join(logDir, "mosquitto.results")); err == nil {
			fmt.Fprintln(out, "mosquitto column: from the last run")
			results["mosquitto"] = r
			cols = append([]string{"mosquitto"}, cols...)
		}
	}
	// A test midge fails that would fail the run is run once more, alone:
	// on a loaded machine (CI's two cores, four tests at once) a test that
	// races its own broker can lose now and then. One that passes alone is
	// reported as such, and does not fail the run.
	if r := runners["midge"]; r != nil && len(results["mosquitto"]) > 0 {
		var again []test
		for _, t := range tests {
			if results["mosquitto"][t.name].outcome == pass && results["midge"][t.name].outcome != pass && allowed[t.name] == "" {
				again = append(again, t)
			}
		}
		if len(again) > 0 {
			fmt.Fprintf(out, "running %d test(s) midge failed again, alone\n", len(again))
			for name, x := range r.runAll(again, 1) {
				if x.outcome == pass {
					x.alone = true
					results["midge"][name] = x
				}
			}
		}
	}
	if err := report(out, tests, cols, results, allowed, verbose); err != nil {
		return err
	}
	// A reference column that mostly fails (files mosquitto cannot read,
	// a missing dependency) would excuse every midge failure: refuse it.
	if r, ok := results["mosquitto"]; ok && run == "" {
		n := 0
		for _, x := range r {
			if x.outcome == pass {
				n++
			}
		}
		if n < minReference {
			return fmt.Errorf("mosquitto itself passes only %d tests (want at least %d): the set-up is broken", n, minReference)
		}
	}
	return nil
}

// minReference is the fewest tests mosquitto must pass for a run to count.
var minReference = 150

// report prints one row per test and the totals, and returns an error when
// midge fails a test mosquitto passes that the list does not allow.
func report(out io.Writer, tests []test, cols []string, results map[string]map[string]result, allowed map[string]string, verbose bool) error {
	fmt.Fprintf(out, "\n%-50s", "test")
	for _, c := range cols {
		fmt.Fprintf(out, " %-9s", c)
	}
	fmt.Fprintln(out)
	totals := make(map[string]map[outcome]int)
	for _, c := range cols {
		totals[c] = make(map[outcome]int)
	}
	var regress, stale, alone []string
	for _, t := range tests {
		fmt.Fprintf(out, "%-50s", t.name)
		for _, c := range cols {
			r := results[c][t.name]
			totals[c][r.outcome]++
			fmt.Fprintf(out, " %-9s", r.outcome)
		}
		mq, mg := results["mosquitto"][t.name], results["midge"][t.name]
		_, listed := allowed[t.name]
		haveBoth := len(results["mosquitto"]) > 0 && len(results["midge"]) > 0
		switch {
		case mg.alone:
			alone = append(alone, t.name)
			fmt.Fprint(out, " (failed with others at once, passed alone)")
		case haveBoth && mq.outcome == pass && mg.outcome != pass && !listed:
			regress = append(regress, t.name)
			fmt.Fprint(out, " <- not listed")
		case haveBoth && mg.outcome == pass && listed && allowed[t.name] == "timing":
			fmt.Fprint(out, " (listed: timing)")
		case haveBoth && mg.outcome == pass && listed:
			stale = append(stale, t.name)
			fmt.Fprint(out, " (listed: "+allowed[t.name]+", but passes)")
		case listed && mg.outcome != pass:
			fmt.Fprint(out, " ("+allowed[t.name]+")")
		}
		fmt.Fprintln(out)
		if verbose && mg.outcome == fail && mg.output != "" {
			fmt.Fprintln(out, indent(mg.output))
		}
	}
	fmt.Fprintln(out)
	for _, c := range cols {
		t := totals[c]
		fmt.Fprintf(out, "%-10s pass %3d  fail %3d  timeout %3d  skipped %3d\n", c, t[pass], t[fail], t[timedOut], t[skipped])
	}
	if len(results["mosquitto"]) > 0 && len(results["midge"]) > 0 {
		both := 0
		mq := 0
		for _, t := range tests {
			if results["mosquitto"][t.name].outcome == pass {
				mq++
				if results["midge"][t.name].outcome == pass {
					both++
				}
			}
		}
		fmt.Fprintf(out, "midge passes %d of the %d tests mosquitto passes\n", both, mq)
	}
	if len(alone) > 0 {
		fmt.Fprintf(out, "passed only when run alone (timing under load: list them if it recurs): %s\n", strings.Join(alone, " "))
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		fmt.Fprintf(out, "listed in the docs but passing now (remove them): %s\n", strings.Join(stale, " "))
	}
	if len(regress) > 0 {
		return fmt.Errorf("midge fails %d test(s) mosquitto passes that docs/mosquitto-suite.md does not list: %s",
			len(regress), strings.Join(regress, " "))
	}
	return nil
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 30 {
		lines = append([]string{"    ..."}, lines[len(lines)-30:]...)
	}
	return "    | " + strings.Join(lines, "\n    | ")
}

// writeWrapper puts src/mosquitto in the tree: the tests start
// ../../src/mosquitto, and the wrapper execs the broker named by
// MOSQ_SUITE_BROKER, so one tree serves both columns.
func writeWrapper(tree string) (string, error) {
	p := filepath.Join(tree, "src", "mosquitto")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	script := "#!/bin/sh\n# written by midge's test/mosqsuite\nexec \"${MOSQ_SUITE_BROKER:?}\" \"$@\"\n"
	return p, os.WriteFile(p, []byte(script), 0o755)
}

func saveResults(path string, rs map[string]result) error {
	var b strings.Builder
	for name, r := range rs {
		fmt.Fprintf(&b, "%s %s\n", name, r.outcome)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func loadResults(path string) (map[string]result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rs := make(map[string]result)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			rs[f[0]] = result{outcome: outcome(f[1])}
		}
	}
	return rs, nil
}

var listRow = regexp.MustCompile("^\\|\\s*`?(\\d\\d-[A-Za-z0-9_.-]+\\.py)`?\\s*\\|\\s*([^|]*)\\|")

// loadList reads the tests allowed to fail on midge: every table row of the
// file whose first cell is a test name; the second cell is the reason kind.
func loadList(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for _, line := range strings.Split(string(b), "\n") {
		if s := listRow.FindStringSubmatch(strings.TrimSpace(line)); s != nil {
			m[s[1]] = strings.TrimSpace(s[2])
		}
	}
	return m, nil
}
