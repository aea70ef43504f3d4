package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestProfileFlags: --cpuprofile and --memprofile write, when the broker
// stops, profiles that `go tool pprof` reads, each in exactly the file named;
// a file that cannot be created stops the broker at start.
func TestProfileFlags(t *testing.T) {
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "mem.pprof")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd, out := startMidge(t, addr, "-p", fmt.Sprint(port), "--cpuprofile", cpu, "--memprofile", mem)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 20; i++ {
		c := client.New(client.Options{Addr: addr, ClientID: fmt.Sprintf("p%d", i), CleanStart: true, Version: codec.Version311})
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Publish(ctx, &client.Message{Topic: []byte("t"), Payload: []byte("x"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if !stopProcess(cmd, syscall.SIGTERM) {
		t.Fatal("midge did not stop on SIGTERM")
	}
	for _, c := range []struct{ file, index, want string }{
		{cpu, "", "Type: cpu"},
		{mem, "-sample_index=alloc_space", "Type: alloc_space"},
	} {
		args := []string{"tool", "pprof", "-top"}
		if c.index != "" {
			args = append(args, c.index)
		}
		got, err := exec.Command("go", append(args, midgeBin, c.file)...).CombinedOutput()
		if err != nil || !strings.Contains(string(got), c.want) {
			t.Errorf("pprof %s: %v\n%s\nmidge:\n%s", c.file, err, got, out.String())
		}
	}

	bad := filepath.Join(dir, "no", "such", "dir", "cpu.pprof")
	res, err := exec.Command(midgeBin, "-p", fmt.Sprint(freePort(t)), "--cpuprofile", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(res), "cpu.pprof") {
		t.Errorf("unwritable --cpuprofile: err %v, output %q", err, res)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("profile written under a missing directory")
	}
}
