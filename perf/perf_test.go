package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/bench"
	brokerconfig "github.com/midge-mqtt/midge/config"
)

// TestMidgeConf checks that midge accepts the config the harness gives it
// and that it asks for what mosquitto gets: no log, same limits.
func TestMidgeConf(t *testing.T) {
	body := strings.ReplaceAll(midgeConf, "{port}", "18830")
	c, err := brokerconfig.ParseReader("midge.conf", strings.NewReader(body))
	if err != nil {
		t.Fatalf("midge refuses the harness's config: %v", err)
	}
	if len(c.LogDests) != 0 {
		t.Fatalf("log destinations %v, want none", c.LogDests)
	}
	if !strings.HasPrefix(mosquittoConf, midgeConf) {
		t.Fatal("mosquitto's config does not start with midge's")
	}
}

// TestStartMosquittoConns runs a small conns scenario against Debian's
// mosquitto started from the harness's config, when it is installed.
func TestStartMosquittoConns(t *testing.T) {
	path := "/usr/sbin/mosquitto"
	if _, err := os.Stat(path); err != nil {
		t.Skip("mosquitto is not installed")
	}
	dir := t.TempDir()
	b, err := start(brokerSpec{Name: "mosquitto", Command: path + " -c {conf}", Conf: mosquittoConf}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop()
	conf, err := os.ReadFile(filepath.Join(dir, "mosquitto.conf"))
	if err != nil || !strings.Contains(string(conf), "listener "+strconv.Itoa(b.Port)+" ") {
		t.Fatalf("config written: %q, %v", conf, err)
	}
	r, err := bench.Run(context.Background(), bench.Config{Scenario: "conns", Port: b.Port, BrokerPID: b.Pid,
		Conns: 300, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.ConnectRate <= 0 || r.GenCPU < 0 || len(r.Steps) != 1 {
		t.Fatalf("result %+v", r)
	}
}

func TestCPUPerConnect(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    bench.Result
		want float64 // µs
	}{
		{"half a core at 20k/s", bench.Result{ConnectRate: 20000, BrokerCPU: 0.5}, 25},
		{"one core at 10k/s", bench.Result{ConnectRate: 10000, BrokerCPU: 1}, 100},
		{"no connections", bench.Result{BrokerCPU: 0.5}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cpuPerConnect(brokerCPU)(&tc.r); got < tc.want-1e-9 || got > tc.want+1e-9 {
				t.Fatalf("got %v µs, want %v", got, tc.want)
			}
		})
	}
}
