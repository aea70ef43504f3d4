package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/midge-mqtt/midge/bench"
)

// persistedConf is midgeConf with persistence on and every QoS 1/2 ack
// waiting for its sync (persistence_sync always, the default).
var persistedConf = strings.Replace(midgeConf, "persistence false\n",
	"persistence true\npersistence_location {store}\npersistence_sync always\nuser root\n", 1)

// persistRatio runs QoS 1 fan-in to a persistent subscriber against midge
// with and without persistence, alternating, and prints the rates and their
// ratio (issue: at least half the in-memory rate with persistence_sync
// always).
func persistRatio(ctx context.Context, o options, midgeCmd, dir string, w io.Writer, logf func(string, ...any)) error {
	if !strings.Contains(persistedConf, "persistence true") {
		return fmt.Errorf("perf: the persisted config has no persistence: %q", persistedConf)
	}
	specs := []brokerSpec{
		{Name: "memory", Command: midgeCmd, Conf: midgeConf},
		{Name: "always", Command: midgeCmd, Conf: persistedConf},
	}
	rates := map[string][]float64{}
	for round := 0; round < max(o.rounds, 2); round++ {
		order := specs
		if round%2 == 1 {
			order = []brokerSpec{specs[1], specs[0]}
		}
		for _, spec := range order {
			b, err := start(spec, dir)
			if err != nil {
				return err
			}
			c := config(o, "qos1")
			c.Persistent = true
			c.Port, c.BrokerPID = b.Port, b.Pid
			r, err := bench.Run(ctx, c)
			if serr := b.stop(); err == nil {
				err = serr
			}
			if err != nil {
				return fmt.Errorf("perf: qos1 -persistent against midge (%s): %w", spec.Name, err)
			}
			logf("qos1 -persistent, persistence %s: %.0f msg/s", spec.Name, r.Rate)
			rates[spec.Name] = append(rates[spec.Name], r.Rate)
		}
	}
	mem, always := median(rates["memory"]), median(rates["always"])
	_, err := fmt.Fprintf(w, "\npersistence: QoS 1 fan-in to a persistent subscriber, medians of %d runs: "+
		"in memory %.0f msg/s, persistence_sync always %.0f msg/s: %.2f× (goal ≥ 0.5×)\n",
		len(rates["memory"]), mem, always, always/mem)
	return err
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
