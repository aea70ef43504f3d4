package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadList: the allowed failures are the table rows of the doc whose
// first cell is a test name; other rows and prose are not.
func TestLoadList(t *testing.T) {
	doc := "# title\n\n| test | kind | spec | reason |\n|---|---|---|---|\n" +
		"| `01-connect-x.py` | (a) told why | [MQTT-4.13.1-1] | ... |\n" +
		"| 07-will-y.py | (b) spec | [MQTT-3.1.2-8] | ... |\n" +
		"Text mentioning 02-z.py is not a row.\n| not-a-test | x | y | z |\n"
	p := filepath.Join(t.TempDir(), "doc.md")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := loadList(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"01-connect-x.py": "(a) told why", "07-will-y.py": "(b) spec"}
	if len(got) != len(want) {
		t.Fatalf("loadList = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("loadList[%q] = %q, want %q", k, got[k], v)
		}
	}
}

// TestReport: the run fails only for a test mosquitto passes that midge
// fails and the list does not allow; a listed test that passes is named.
func TestReport(t *testing.T) {
	tests := []test{{name: "01-a.py"}, {name: "01-b.py"}, {name: "01-c.py"}, {name: "01-d.py"}}
	res := map[string]map[string]result{
		"mosquitto": {"01-a.py": {outcome: pass}, "01-b.py": {outcome: pass}, "01-c.py": {outcome: fail}, "01-d.py": {outcome: pass}},
		"midge":     {"01-a.py": {outcome: pass}, "01-b.py": {outcome: fail}, "01-c.py": {outcome: fail}, "01-d.py": {outcome: pass}},
	}
	cols := []string{"mosquitto", "midge"}
	var out strings.Builder
	if err := report(&out, tests, cols, res, map[string]string{"01-b.py": "(a)"}, false); err != nil {
		t.Fatalf("report with 01-b listed: %v", err)
	}
	if !strings.Contains(out.String(), "midge passes 2 of the 3 tests mosquitto passes") {
		t.Fatalf("report:\n%s", out.String())
	}
	out.Reset()
	err := report(&out, tests, cols, res, map[string]string{"01-d.py": "(b)"}, false)
	if err == nil || !strings.Contains(err.Error(), "01-b.py") {
		t.Fatalf("report with 01-b not listed: %v", err)
	}
	if !strings.Contains(out.String(), "listed in the docs but passing now (remove them): 01-d.py") {
		t.Fatalf("stale entry not named:\n%s", out.String())
	}
}

// TestReportAlone: a test midge failed among others and passed when run
// again alone does not fail the run, and is named; a listed timing test
// that passes is not called stale.
func TestReportAlone(t *testing.T) {
	tests := []test{{name: "01-a.py"}, {name: "01-b.py"}}
	res := map[string]map[string]result{
		"mosquitto": {"01-a.py": {outcome: pass}, "01-b.py": {outcome: pass}},
		"midge":     {"01-a.py": {outcome: pass, alone: true}, "01-b.py": {outcome: pass}},
	}
	var out strings.Builder
	if err := report(&out, tests, []string{"mosquitto", "midge"}, res, map[string]string{"01-b.py": "timing"}, false); err != nil {
		t.Fatalf("report: %v", err)
	}
	if !strings.Contains(out.String(), "passed only when run alone (timing under load: list them if it recurs): 01-a.py") {
		t.Fatalf("retried test not named:\n%s", out.String())
	}
	if strings.Contains(out.String(), "remove them") {
		t.Fatalf("a listed timing test that passes is called stale:\n%s", out.String())
	}
}
