package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// progress draws a one-line progress bar on a terminal; a nil writer draws nothing.
type progress struct {
	w     io.Writer
	name  string
	total time.Duration
	last  time.Time
}

func newProgress(w io.Writer, name string, total time.Duration) *progress {
	return &progress{w: w, name: name, total: total}
}

// show draws the bar at done of total; for conns, durations are counts.
func (p *progress) show(done time.Duration, sent, recv int64) {
	if p.w == nil || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	const width = 30
	f := min(1, float64(done)/float64(p.total))
	bar := strings.Repeat("=", int(f*width)) + strings.Repeat(" ", width-int(f*width))
	fmt.Fprintf(p.w, "\r%-9s [%s] %3.0f%%  sent %-10d recv %-10d", p.name, bar, f*100, sent, recv)
}

func (p *progress) done() {
	if p.w != nil {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// WriteJSON writes results as an indented JSON array.
func WriteJSON(w io.Writer, results []*Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

// WriteTable writes results as an aligned table, one row per scenario.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tshape\tsent/s\tdelivered/s\tlost\treordered\tp50\tp99\tgen CPU\tbroker CPU\tmsg/broker-CPU-s\tbroker RSS\t")
	for _, r := range results {
		if r.Error != "" && r.Seconds == 0 {
			fmt.Fprintf(tw, "%s\t%s\terror: %s\t\t\t\t\t\t\t\t\t\t\n", r.Scenario, r.Shape, r.Error)
			continue
		}
		sent, delivered := Count(r.SentRate), Count(r.Rate)
		p50, p99 := "-", "-"
		if r.Latency != nil {
			p50, p99 = Micros(r.Latency.P50), Micros(r.Latency.P99)
		}
		switch r.Scenario {
		case "conns", "connpin": // connpin: perf's pinned conns
			sent, delivered = Count(r.ConnectRate)+" conn/s", fmt.Sprintf("%.2f KiB/conn", r.KiBPerConn)
			if r.BrokerRSSKiB > 0 {
				delivered += fmt.Sprintf(", idle CPU %.2f%%", r.IdleCPU*100)
			}
		case "tls-conns", "tls-conns-ec", "wss-conns":
			sent, delivered = Count(r.ConnectRate)+" conn/s", fmt.Sprintf("%.2f KiB/conn", r.KiBPerConn)
		case "retained":
			sent = fmt.Sprintf("%.1f rounds", r.SentRate)
		case QueueScenario: // delivered only after the publishers: the drain
			delivered = Count(r.DrainRate) + " drain"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Scenario, r.Shape, sent, delivered,
			r.Lost, r.Reordered, p50, p99, Percent(r.GenCPU), Percent(r.BrokerCPU), Count(r.PerBrokerCPU), KiB(r.BrokerRSSKiB))
	}
	return tw.Flush()
}

// Count formats a rate or count compactly (12.3k, 1.20M).
func Count(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// Micros formats microseconds with a unit that keeps three figures.
func Micros(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2fs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.0fµs", us)
}

// Percent formats a CPU share (1 = one core).
func Percent(cores float64) string {
	if cores == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", cores*100)
}

// KiB formats a size in KiB as MiB.
func KiB(k int64) string {
	if k == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(k)/1024)
}
