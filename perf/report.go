package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/midge-mqtt/midge/bench"
)

// env describes the machine and software a report was made on.
type env struct {
	Date, CPU, Kernel, Go, Mosquitto, Midge string
	Cores                                   int
	MemGiB                                  float64
}

func environment(midge string) env {
	e := env{Date: time.Now().UTC().Format("2006-01-02"), Go: runtime.Version(), Cores: runtime.NumCPU()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%f", &kib)
		e.MemGiB = kib / (1 << 20)
	}
	rev, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	ver, _ := exec.Command(midge, "--version").Output()
	e.Midge = strings.TrimSpace(string(ver)) + " (commit " + strings.TrimSpace(string(rev)) + ")"
	return e
}

// metric is one figure compared across brokers.
type metric struct {
	Name   string
	Higher bool // higher is better
	Get    func(*bench.Result) float64
	Fmt    func(float64) string
	// Target is the midge/mosquitto ratio midge must reach (at least when
	// Higher, at most otherwise); 0 = none.
	Target float64
}

func rate(r *bench.Result) float64   { return r.Rate }
func perCPU(r *bench.Result) float64 { return r.PerBrokerCPU }
func lost(r *bench.Result) float64   { return float64(r.Lost) }

// lostPct is the share of the deliveries owed that never arrived.
func lostPct(r *bench.Result) float64 {
	if r.Expected == 0 {
		return 0
	}
	return float64(r.Lost) / float64(r.Expected) * 100
}
func fmtPct(v float64) string           { return fmt.Sprintf("%.2f%%", v) }
func rssMiB(r *bench.Result) float64    { return float64(r.BrokerRSSKiB) / 1024 }
func brokerCPU(r *bench.Result) float64 { return r.BrokerCPU }
func genCPU(r *bench.Result) float64    { return r.GenCPU }
func fmtCount(v float64) string         { return bench.Count(v) }
func fmtMicros(v float64) string        { return fmt.Sprintf("%.1f µs", v) }

// cpuPerConnect is CPU time per connection opened, from a conns run's CPU
// share (cores) during the connect phase and its rate: the cost that
// decides the rate once the cores are full.
func cpuPerConnect(cpu func(*bench.Result) float64) func(*bench.Result) float64 {
	return func(r *bench.Result) float64 {
		if r.ConnectRate == 0 {
			return 0
		}
		return cpu(r) / r.ConnectRate * 1e6
	}
}
func fmtMiB(v float64) string { return fmt.Sprintf("%.1f MiB", v) }
func fmtInt(v float64) string { return fmt.Sprintf("%.0f", v) }

func latencyAt(f func(*bench.Latency) float64) func(*bench.Result) float64 {
	return func(r *bench.Result) float64 {
		if r.Latency == nil {
			return 0
		}
		return f(r.Latency)
	}
}

// metrics lists, per scenario, the figures the report compares, with the
// targets of issue 6.
func metrics(scenario string) []metric {
	delivered := func(target float64) metric {
		return metric{Name: "delivered msg/s", Higher: true, Get: rate, Fmt: fmtCount, Target: target}
	}
	common := []metric{
		{Name: "msgs per broker CPU-s", Higher: true, Get: perCPU, Fmt: fmtCount},
		{Name: "broker CPU", Higher: false, Get: brokerCPU, Fmt: bench.Percent},
		{Name: "lost", Higher: false, Get: lost, Fmt: fmtInt},
		{Name: "broker RSS", Higher: false, Get: rssMiB, Fmt: fmtMiB},
	}
	switch scenario {
	case "fanin", "fanin4":
		return append([]metric{delivered(4), {Name: "lost %", Get: lostPct, Fmt: fmtPct}}, common...)
	case "pairs":
		return append([]metric{delivered(3)}, common...)
	case "fanout", "fanoutstuck":
		m := append([]metric{delivered(2)}, common...)
		m[1].Target = 3
		return m
	case "qos1", "qos2":
		return append([]metric{delivered(5)}, common...)
	case "retained":
		return append([]metric{delivered(0)}, common...)
	case "latency":
		return []metric{
			{Name: "p50", Get: latencyAt(func(l *bench.Latency) float64 { return l.P50 }), Fmt: bench.Micros, Target: 1},
			{Name: "p90", Get: latencyAt(func(l *bench.Latency) float64 { return l.P90 }), Fmt: bench.Micros},
			{Name: "p99", Get: latencyAt(func(l *bench.Latency) float64 { return l.P99 }), Fmt: bench.Micros, Target: 1},
			{Name: "p99.9", Get: latencyAt(func(l *bench.Latency) float64 { return l.P999 }), Fmt: bench.Micros},
			{Name: "max", Get: latencyAt(func(l *bench.Latency) float64 { return l.Max }), Fmt: bench.Micros},
			common[1], common[2],
		}
	case "tls-fanin", "tls-pairs":
		return append([]metric{delivered(5)}, common...)
	case "tls-conns", "tls-conns-ec", "wss-conns":
		return []metric{
			{Name: "handshakes/s", Higher: true, Get: func(r *bench.Result) float64 { return r.ConnectRate }, Fmt: fmtCount},
			{Name: "KiB per conn", Get: func(r *bench.Result) float64 { return r.KiBPerConn },
				Fmt: func(v float64) string { return fmt.Sprintf("%.2f", v) }},
			{Name: "broker CPU µs per handshake", Get: cpuPerConnect(brokerCPU), Fmt: fmtMicros},
			{Name: "generator CPU µs per handshake", Get: cpuPerConnect(genCPU), Fmt: fmtMicros},
			common[1], common[3],
		}
	case "conns":
		return []metric{
			{Name: "connect rate", Higher: true, Get: func(r *bench.Result) float64 { return r.ConnectRate }, Fmt: fmtCount, Target: 2},
			{Name: "KiB per conn", Get: func(r *bench.Result) float64 { return r.KiBPerConn },
				Fmt: func(v float64) string { return fmt.Sprintf("%.2f", v) }},
			{Name: "broker CPU µs per connect", Get: cpuPerConnect(brokerCPU), Fmt: fmtMicros},
			{Name: "generator CPU µs per connect", Get: cpuPerConnect(genCPU), Fmt: fmtMicros},
			common[1], common[3],
			{Name: "broker RSS at start", Get: func(r *bench.Result) float64 { return float64(r.StartRSSKiB) / 1024 },
				Fmt: fmtMiB, Target: 1.5},
			{Name: "broker anonymous RSS at start", Get: func(r *bench.Result) float64 { return float64(r.StartAnonKiB) / 1024 },
				Fmt: fmtMiB},
			{Name: "idle broker CPU", Get: func(r *bench.Result) float64 { return r.IdleCPU * 100 }, Fmt: fmtPct},
		}
	case "connpin":
		return []metric{
			{Name: "connect rate", Higher: true, Get: func(r *bench.Result) float64 { return r.ConnectRate }, Fmt: fmtCount},
			{Name: "broker CPU µs per connect", Get: cpuPerConnect(brokerCPU), Fmt: fmtMicros, Target: 0.5},
			{Name: "generator CPU µs per connect", Get: cpuPerConnect(genCPU), Fmt: fmtMicros},
		}
	}
	return nil
}

// stat is the median and range of one metric over a broker's runs.
type stat struct {
	Median, Min, Max float64
	N                int
}

func statOf(vs []float64) stat {
	if len(vs) == 0 {
		return stat{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// row is one metric of one scenario across brokers.
type row struct {
	Scenario string
	Metric   metric
	Stats    map[string]stat // by broker
	Ratio    float64         // midge / mosquitto medians; 0 when unknown
	Met      string          // "yes", "no" or ""
}

type report struct {
	env     env
	opts    options
	brokers []brokerSpec
	runs    []runResult
	rows    []row
}

func newReport(e env, o options, brokers []brokerSpec, runs []runResult) *report {
	rep := &report{env: e, opts: o, brokers: brokers, runs: runs}
	for _, name := range strings.Split(o.scenarios, ",") {
		for _, m := range metrics(name) {
			rw := row{Scenario: name, Metric: m, Stats: map[string]stat{}}
			for _, b := range brokers {
				var vs []float64
				for _, r := range runs {
					if r.Broker == b.Name && r.Result.Scenario == name && r.Result.Error == "" {
						vs = append(vs, m.Get(r.Result))
					}
				}
				rw.Stats[b.Name] = statOf(vs)
			}
			a, b := rw.Stats["midge"], rw.Stats["mosquitto"]
			if a.N > 0 && b.N > 0 && b.Median != 0 && m.Name != "lost" && m.Name != "lost %" && m.Name != "idle broker CPU" {
				rw.Ratio = a.Median / b.Median
			}
			if m.Target > 0 && rw.Ratio > 0 {
				rw.Met = "no"
				if (m.Higher && rw.Ratio >= m.Target) || (!m.Higher && rw.Ratio <= m.Target) {
					rw.Met = "yes"
				}
			}
			// Absolute targets of issues 6, 19 and 22: no loss at QoS 1/2, at
			// fan-out and at QoS 0 fan-in, at most 0.7 KiB of RSS per idle
			// connection (8 KiB over TLS) and 1% of a core for all of them.
			if (m.Name == "lost" && (name == "qos1" || name == "qos2" || name == "fanout" || name == "fanoutstuck" || name == "fanin" || name == "fanin4")) ||
				(m.Name == "KiB per conn" && kibLimit(name) > 0) || m.Name == "idle broker CPU" {
				limit := 0.0
				switch m.Name {
				case "KiB per conn":
					limit = kibLimit(name)
				case "idle broker CPU":
					limit = 1
				}
				if a.N > 0 {
					rw.Met = "no"
					if a.Max <= limit {
						rw.Met = "yes"
					}
				}
			}
			rep.rows = append(rep.rows, rw)
		}
	}
	return rep
}

// kibLimit is the RSS per idle connection a conns scenario must stay under.
func kibLimit(scenario string) float64 {
	switch scenario {
	case "conns":
		return 0.7
	case "tls-conns", "tls-conns-ec", "wss-conns":
		return 8
	}
	return 0
}

// targetText says what a row must reach, for the report.
func targetText(rw row) string {
	switch {
	case rw.Metric.Name == "lost" && rw.Met != "":
		return "0"
	case rw.Metric.Name == "KiB per conn":
		return fmt.Sprintf("≤ %g KiB", kibLimit(rw.Scenario))
	case rw.Metric.Name == "idle broker CPU":
		return "≤ 1%"
	case rw.Metric.Target == 0:
		return ""
	case rw.Metric.Higher:
		return fmt.Sprintf("≥ %g×", rw.Metric.Target)
	}
	return fmt.Sprintf("≤ %g×", rw.Metric.Target)
}

func (rep *report) cell(rw row, broker string) string {
	s := rw.Stats[broker]
	if s.N == 0 {
		return "-"
	}
	f := rw.Metric.Fmt
	if s.N == 1 || s.Min == s.Max {
		return f(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

// summary is the table of medians and ratios, as Markdown.
func (rep *report) summary() string {
	var b strings.Builder
	b.WriteString("| scenario | metric |")
	for _, br := range rep.brokers {
		b.WriteString(" " + br.Name + " median (min–max) |")
	}
	b.WriteString(" midge / mosquitto | target | met |\n|---|---|")
	for range rep.brokers {
		b.WriteString("---|")
	}
	b.WriteString("---|---|---|\n")
	for _, rw := range rep.rows {
		fmt.Fprintf(&b, "| %s | %s |", rw.Scenario, rw.Metric.Name)
		for _, br := range rep.brokers {
			b.WriteString(" " + rep.cell(rw, br.Name) + " |")
		}
		ratio := "-"
		if rw.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f×", rw.Ratio)
		}
		fmt.Fprintf(&b, " %s | %s | %s |\n", ratio, targetText(rw), rw.Met)
	}
	return b.String()
}

// write writes <date>.md, <date>.json and the charts into dir.
func (rep *report) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(dir, rep.env.Date)
	raw, _ := json.MarshalIndent(rep.runs, "", "  ")
	if err := os.WriteFile(base+".json", raw, 0o644); err != nil {
		return "", err
	}
	charts, err := rep.charts(base)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	e := rep.env
	fmt.Fprintf(&b, "# midge vs mosquitto, %s\n\n", e.Date)
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %.0f GiB; kernel %s\n", e.CPU, e.Cores, e.MemGiB, e.Kernel)
	fmt.Fprintf(&b, "- Go %s; %s; mosquitto: %s\n", e.Go, e.Midge, e.Mosquitto)
	fmt.Fprintf(&b, "- `go run ./perf -rounds %d -d %v -w %v -conns %d`: each broker fresh per run, runs in A B B A order; "+
		"the load generator (`midge bench`, in the harness process) shares the %d cores.\n",
		rep.opts.rounds, rep.opts.duration, rep.opts.warmup, rep.opts.conns, e.Cores)
	b.WriteString("- Scenarios: fanin 32→1, fanin4 4→1, fanout 1→1000, fanoutstuck 1→999 and one subscriber that never reads, pairs 100, qos1/qos2 32→1 (16 inflight per publisher), " +
		"latency 10 pairs at 10,000 msg/s in total, conns idle connections with RSS read at steps (and before the first: RSS at start) and the broker's CPU while they are held idle 5 s, " +
		"connpin the same connects with the generator (a `midge bench` process) on core 0 and the broker on core 1 (taskset), retained 10,000 topics; 64-byte payloads, MQTT 3.1.1, QoS 0 unless named.\n")
	b.WriteString("- Medians over runs, (min–max); ratios are midge / mosquitto medians. CPU is broker CPU-seconds per second (100% = one core). " +
		"For retained, p50/p99 in the run table are the times of whole rounds (subscribe until every retained message arrived, or the last one before a 2 s silence).\n\n")
	b.WriteString("## Summary\n\n")
	b.WriteString(rep.summary())
	b.WriteString("\n")
	for _, c := range charts {
		fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(c, ".png"), c)
	}
	b.WriteString("## Idle connections: broker RSS per step\n\n| broker | round | conns | RSS | KiB/conn |\n|---|---|---|---|---|\n")
	for _, r := range rep.runs {
		for _, s := range r.Result.Steps {
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %.2f |\n", r.Broker, r.Round, s.Conns, bench.KiB(s.RSSKiB), s.KiBPerConn)
		}
	}
	b.WriteString("\n## Every run\n\n| scenario | broker | round | sent/s | delivered/s | lost | reordered | p50 | p99 | gen CPU | broker CPU | msg/broker-CPU-s | RSS | error |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.runs {
		x := r.Result
		p50, p99 := "-", "-"
		if x.Latency != nil {
			p50, p99 = bench.Micros(x.Latency.P50), bench.Micros(x.Latency.P99)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", x.Scenario, r.Broker, r.Round,
			bench.Count(x.SentRate), bench.Count(x.Rate), x.Lost, x.Reordered, p50, p99, bench.Percent(x.GenCPU),
			bench.Percent(x.BrokerCPU), bench.Count(x.PerBrokerCPU), bench.KiB(x.BrokerRSSKiB), x.Error)
	}
	fmt.Fprintf(&b, "\nRaw results: [%s](%s).\n", filepath.Base(base)+".json", filepath.Base(base)+".json")
	path := base + ".md"
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}
