package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/midge-mqtt/midge/bench"
)

// unixCompare runs QoS 0 pairs over a Unix domain socket and over loopback
// TCP against each broker (A B B A, each broker fresh per round, the two
// transports alternating inside a run) and writes the medians and ratios
// to w and to OUT/DATE-unix.md.
func unixCompare(ctx context.Context, o options, e env, brokers []brokerSpec, w io.Writer, logf func(string, ...any)) error {
	// mosquitto, started as root, binds its Unix socket as its own user:
	// the socket's directory is open to all (sticky).
	sockDir, err := os.MkdirTemp("", "midge-perf-unix")
	if err != nil {
		return err
	}
	defer os.RemoveAll(sockDir)
	if err := os.Chmod(sockDir, 0o1777); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "midge-perf")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rates := map[string][]float64{} // broker + "/" + transport
	for round := 0; round < o.rounds; round++ {
		order := append([]brokerSpec(nil), brokers...)
		if round%2 == 1 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, spec := range order {
			sock := filepath.Join(sockDir, spec.Name+".sock")
			spec.Conf += "listener 0 " + sock + "\n"
			b, err := start(spec, dir)
			if err != nil {
				return err
			}
			transports := []string{"tcp", "unix"}
			if round%2 == 1 {
				transports = []string{"unix", "tcp"}
			}
			for _, tr := range transports {
				c := config(o, "pairs")
				c.Port, c.BrokerPID = b.Port, b.Pid
				if tr == "unix" {
					c.Unix = sock
				}
				r, err := bench.Run(ctx, c)
				if err != nil {
					b.stop()
					return fmt.Errorf("perf: pairs over %s against %s: %w", tr, spec.Name, err)
				}
				logf("pairs over %s, %s: %.0f msg/s delivered", tr, spec.Name, r.Rate)
				rates[spec.Name+"/"+tr] = append(rates[spec.Name+"/"+tr], r.Rate)
			}
			if err := b.stop(); err != nil {
				return err
			}
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "# Unix domain socket vs loopback TCP, %s\n\n", e.Date)
	fmt.Fprintf(&sb, "Machine: %s, %d cores, %.0f GiB, Linux %s, %s. %s. %s.\n\n", e.CPU, e.Cores, e.MemGiB, e.Kernel, e.Go, e.Midge, e.Mosquitto)
	fmt.Fprintf(&sb, "QoS 0 pairs (`midge bench pairs`: 100 publisher/subscriber pairs, 64-byte payloads), "+
		"delivered msg/s, medians of %d runs of %s per broker and transport (A B B A).\n\n", o.rounds, o.duration)
	sb.WriteString("| broker | TCP msg/s | Unix msg/s | Unix / TCP |\n|---|---|---|---|\n")
	for _, spec := range brokers {
		tcp, unix := median(rates[spec.Name+"/tcp"]), median(rates[spec.Name+"/unix"])
		fmt.Fprintf(&sb, "| %s | %.0f | %.0f | %.2f× |\n", spec.Name, tcp, unix, unix/tcp)
	}
	if len(brokers) > 1 {
		a, b := brokers[0].Name, brokers[1].Name
		fmt.Fprintf(&sb, "\n%s / %s over the Unix socket: %.2f×; over TCP: %.2f×.\n", a, b,
			median(rates[a+"/unix"])/median(rates[b+"/unix"]), median(rates[a+"/tcp"])/median(rates[b+"/tcp"]))
	}
	fmt.Fprint(w, "\n"+sb.String())
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(o.out, e.Date+"-unix.md")
	logf("report: %s", path)
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}
