package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelp: `midge --help`, `-h` and `midge help` list the broker's flags
// in mosquitto's manner and every subcommand with a line; every subcommand
// answers --help (and `midge help NAME`) with its usage, exit status 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, err := exec.Command(midgeBin, args...).Output()
		if err != nil {
			t.Fatalf("midge %v: %v", args, err)
		}
		for _, want := range []string{"Usage: midge [-c config_file] [-d] [-h] [-p port] [-v]", " -c, --config-file FILE", " -p, --port PORT"} {
			if !strings.Contains(string(out), want) {
				t.Fatalf("midge %v: no %q in\n%s", args, want, out)
			}
		}
		for _, c := range commands {
			if !strings.Contains(string(out), "\n  "+c.name+" ") {
				t.Fatalf("midge %v does not list %s:\n%s", args, c.name, out)
			}
		}
	}
	for name := range subcommands {
		for _, args := range [][]string{{name, "--help"}, {"help", name}} {
			out, _ := exec.Command(midgeBin, args...).Output()
			if !strings.Contains(strings.ToLower(string(out)), "usage: midge "+name) {
				t.Fatalf("midge %v: no usage on stdout:\n%s", args, out)
			}
		}
	}
	if len(commands) != len(subcommands) {
		t.Fatalf("%d commands listed, %d served", len(commands), len(subcommands))
	}
}

// TestManPages: `midge man DIR` writes a page per command whose text is
// exactly what the command's --help prints (and man renders it).
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command(midgeBin, "man", dir).CombinedOutput(); err != nil {
		t.Fatalf("midge man: %v\n%s", err, out)
	}
	pages := map[string][]string{"midge": {"--help"}}
	for _, c := range commands {
		if c.name != "man" {
			pages["midge-"+c.name] = []string{c.name, "--help"}
		}
	}
	unescape := strings.NewReplacer(`\e`, `\`, `\-`, "-", `\&`, "")
	for page, args := range pages {
		b, err := os.ReadFile(filepath.Join(dir, page+".1"))
		if err != nil {
			t.Fatal(err)
		}
		_, body, _ := strings.Cut(string(b), ".nf\n")
		body, _, _ = strings.Cut(body, ".fi\n")
		help, _ := exec.Command(midgeBin, args...).Output()
		if got := unescape.Replace(body); got != strings.TrimRight(string(help), "\n")+"\n" {
			t.Fatalf("%s.1 differs from midge %v:\n%s\n---\n%s", page, args, got, help)
		}
		if _, err := exec.LookPath("man"); err == nil {
			out, err := exec.Command("man", "-l", filepath.Join(dir, page+".1")).Output()
			if err != nil || !strings.Contains(string(out), "Usage:") && !strings.Contains(string(out), "usage:") {
				t.Fatalf("man -l %s.1: %v\n%s", page, err, out)
			}
		}
	}
}
