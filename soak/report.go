package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// verdict is what the run proved or broke.
type verdict struct {
	failures []string
	levels   []string // the levelling rule's figures, for the report
}

// judgeRun turns the checker's findings and the samples into a verdict.
// enforce applies the levelling rule (a short run cannot tell levelling
// from warm-up, so it is reported but not enforced).
func judgeRun(s *soak, samples []sample, brokerErr error, enforce bool) verdict {
	var v verdict
	if brokerErr != nil {
		v.failures = append(v.failures, brokerErr.Error())
	}
	s.chk.mu.Lock()
	for kind, n := range s.chk.byKind {
		v.failures = append(v.failures, fmt.Sprintf("%d × %s", n, kind))
	}
	s.chk.mu.Unlock()
	series := func(f func(sample) float64) []float64 {
		out := make([]float64, len(samples))
		for i, x := range samples {
			out[i] = f(x)
		}
		return out
	}
	for _, l := range []struct {
		name        string
		vals        []float64
		frac, slack float64
		unit        string
	}{
		{"broker RSS", series(func(x sample) float64 { return mib(x.RSS) }), 0.10, 8, "MiB"},
		{"store size", series(func(x sample) float64 { return mib(x.Store) }), 0.10, 16, "MiB"},
		{"broker goroutines", series(func(x sample) float64 { return x.Goroutines }), 0.10, 20, ""},
	} {
		mid, last, ok := levels(l.vals, l.frac, l.slack)
		word := "levels off"
		if !ok {
			word = "CLIMBS"
			if enforce {
				v.failures = append(v.failures, fmt.Sprintf("%s climbs: median of the last third %.1f %s > middle third %.1f %s + max(%.0f%%, %.0f %s)",
					l.name, last, l.unit, mid, l.unit, l.frac*100, l.slack, l.unit))
			}
		}
		v.levels = append(v.levels, fmt.Sprintf("| %s | %.1f %s | %.1f %s | %+.1f %s | max(%.0f%%, %.0f %s) | %s |",
			l.name, mid, l.unit, last, l.unit, last-mid, l.unit, l.frac*100, l.slack, l.unit, word))
	}
	return v
}

// writeReport writes NAME.md and NAME.png to dir.
func writeReport(dir, name string, s *soak, samples []sample, v verdict, b *broker, enforce bool, took time.Duration) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	chart := name + ".png"
	if err := drawChart(filepath.Join(dir, chart), samples); err != nil {
		return "", err
	}
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format+"\n", a...) }
	c := s.chk
	p("# Soak: %v, %d clients, persistence on", s.cfg.duration, s.mix.total())
	p("")
	p("%s; Go %s, %s/%s, %d CPUs; midge %s. `go run ./soak -d %v -clients %d -rate %g` (whole run incl. setup and drain: %v).",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), strings.TrimPrefix(runtime.Version(), "go"), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), gitDescribe(), s.cfg.duration, s.cfg.clients, s.cfg.rate, took.Round(time.Second))
	p("")
	if len(v.failures) == 0 {
		p("**Result: every guarantee kept%s.**", map[bool]string{true: "; RSS, store size and goroutines level off", false: ""}[enforce])
	} else {
		p("**Result: FAILED** — %s.", strings.Join(v.failures, "; "))
	}
	p("")
	m := s.mix
	p("## The load")
	p("")
	p("- %d publishers, one topic each (`soak/G/pI/qQ`, %d groups), QoS 0/1/2 in turn, %.2f msg/s each (%.0f msg/s in all), payload 20–%d B, persistent sessions (half MQTT 5), DISCONNECT or a dropped connection about every %v, back after 0.5–3 s; unacknowledged QoS 1/2 messages are resent with the session.",
		m.publishers, s.groups, s.perPubRate, s.cfg.rate, 20+s.cfg.payload, 2*s.cfg.online)
	p("- %d persistent subscribers (half MQTT 3.1.1 clean session 0, half MQTT 5 session expiry 3600) and %d clean ones, each with three non-overlapping subscriptions at random QoS: a group wildcard (`soak/G/#` or `soak/G/+/qQ`) and two single streams (exact or `soak/+/pI/+`). About every %v (exponential): DISCONNECT (40%%), a dropped connection (40%%) or, for sessions with no QoS 2 delivery, a takeover by a new connection (20%%); away 1–10 s (persistent) or 0.2–2 s (clean).",
		m.persistent, m.clean, s.cfg.online)
	p("- %d shared subscriptions (`$share/shJ/soak/G/+/qQ`, QoS 1, every third QoS 2), %d MQTT 5 persistent members in all, coming and going.", m.sharedGroups, m.shared)
	p("- %d will clients (QoS 1 will, clean session; connected 2–15 s, then DISCONNECT or a dropped connection, half each) and one persistent will watcher.", m.wills)
	p("- %d retained setters (16 topics each, QoS 1, one every 0.1–0.5 s, one in seven a clear) and %d checkers that subscribe afresh every 1–4 s.", m.setters, m.checkers)
	p("- %d slow consumers (`soak/+/+/q0` at QoS 0, 1 ms per message, and every 20–40 s they stop reading for 10–25 s).", m.slow)
	p("")
	p("Broker config (midge, spawned):")
	p("")
	p("```")
	p("%s```", b.conf)
	p("")
	p("## Deliveries (effective QoS: the lower of the publication's and the subscription's)")
	p("")
	p("| QoS | published | delivered (first arrivals) | checked at the end (required) | lost | duplicates | out of order |")
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for q := range c.qos {
		x := &c.qos[q]
		p("| %d | %d | %d | %d | %d | %d | %d |", q, x.published.Load(), x.delivered.Load(), x.required.Load(), x.lost.Load(), x.duplicates.Load(), x.reordered.Load())
	}
	p("")
	p("QoS 0 losses are allowed (%d of them at slow consumers, the rest to offline sessions and dropped connections); duplicates of QoS 1 publications are allowed, at QoS 1 and at QoS 0 (a publisher resends after a reconnect and the broker forwards again; %d of them a shared message given to a second member). "+
		"QoS 1 publications delivered at QoS 0 whose first copy was lost and whose resend came after later messages (allowed): %d. QoS 0 messages sent on a publisher connection that it then closed, arriving after later messages sent on its next connection (allowed: no order across connections): %d. Gaps of messages the broker never acknowledged (their publisher's connection dropped first): %d, not counted. Retained checks: %d. Wills judged right: %d (QoS 1 will duplicates: %d). "+
		"Churn: %d disconnects, %d takeovers, %d connections that ended on their own, %d failed CONNECT attempts. The broker's dropped-message counter at the end: %.0f.",
		c.slowDropped.Load(), c.sharedTwice.Load(), c.lateResends.Load(), c.lateAcrossConns.Load(), c.unackedGaps.Load(), c.retainChecks.Load(), c.willsOK.Load(), c.willDups.Load(),
		s.churns.Load(), s.takeovers.Load(), s.unexpectedDrops.Load(), s.connectFailures.Load(), lastDropped(samples))
	all := c.latAll
	p("")
	p("Latency of live deliveries (publish → arrival, subscriber connected ≥1 s before the publish), whole run, sampled: ")
	for q := range all {
		d := append([]time.Duration(nil), all[q]...)
		p("QoS %d p50 %v, p99 %v, max %v (%d samples)%s", q, percentile(d, 0.5).Round(10*time.Microsecond), percentile(d, 0.99).Round(10*time.Microsecond),
			percentile(d, 1).Round(time.Millisecond), len(d), map[bool]string{true: ".", false: ";"}[q == 2])
	}
	p("")
	p("## Resources")
	p("")
	p("![RSS, store size, goroutines, p99 latency over time](%s)", chart)
	p("")
	p("Levelling rule: the first third of the samples is warm-up; the median of the last third may exceed the median of the middle third by at most the larger of 10%% and a fixed slack%s.",
		map[bool]string{true: "", false: " (reported, not enforced: the run is shorter than 10 minutes)"}[enforce])
	p("")
	p("| | middle third | last third | change | allowed | |")
	p("| --- | ---: | ---: | ---: | ---: | --- |")
	for _, l := range v.levels {
		p("%s", l)
	}
	p("")
	p("| t | RSS MiB | goroutines | store MiB | p99 | p99 QoS 0/1/2 | pub/s | delivered/s | connected | dropped |")
	p("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
	step := max(1, len(samples)/30)
	for i, x := range samples {
		if i%step != 0 && i != len(samples)-1 {
			continue
		}
		p("| %v | %.1f | %.0f | %.1f | %v | %v / %v / %v | %.0f | %.0f | %.0f | %.0f |", x.At, mib(x.RSS), x.Goroutines, mib(x.Store),
			x.P99.Round(10*time.Microsecond), x.P99ByQoS[0].Round(10*time.Microsecond), x.P99ByQoS[1].Round(10*time.Microsecond),
			x.P99ByQoS[2].Round(10*time.Microsecond), x.PubRate, x.DelRate, x.Connected, x.Dropped)
	}
	c.mu.Lock()
	if len(c.violations) > 0 {
		p("")
		p("## Violations (first %d)", len(c.violations))
		p("")
		for _, x := range c.violations {
			p("- %v %s: %s", x.At, x.Kind, x.What)
		}
	}
	c.mu.Unlock()
	path := filepath.Join(dir, name+".md")
	return path, os.WriteFile(path, []byte(w.String()), 0o644)
}

func lastDropped(samples []sample) float64 {
	if len(samples) == 0 {
		return 0
	}
	return samples[len(samples)-1].Dropped
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "(unknown)"
	}
	return strings.TrimSpace(string(out))
}

// drawChart stacks four time series: RSS, store size, goroutines, p99.
func drawChart(path string, samples []sample) error {
	type line struct {
		name string
		f    func(sample) float64
	}
	panels := []struct {
		title, unit string
		lines       []line
	}{
		{"broker RSS", "MiB", []line{{"RSS", func(x sample) float64 { return mib(x.RSS) }}}},
		{"store size", "MiB", []line{{"store", func(x sample) float64 { return mib(x.Store) }}}},
		{"broker goroutines", "", []line{{"goroutines", func(x sample) float64 { return x.Goroutines }}}},
		{"p99 latency of live deliveries (per sample interval)", "ms", []line{
			{"all", func(x sample) float64 { return ms(x.P99) }},
			{"QoS 0", func(x sample) float64 { return ms(x.P99ByQoS[0]) }},
			{"QoS 1", func(x sample) float64 { return ms(x.P99ByQoS[1]) }},
			{"QoS 2", func(x sample) float64 { return ms(x.P99ByQoS[2]) }},
		}},
	}
	plots := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		p.X.Label.Text = "minutes"
		p.Y.Label.Text = pn.unit
		p.Y.Min = 0
		for j, l := range pn.lines {
			pts := make(plotter.XYs, len(samples))
			for k, x := range samples {
				pts[k] = plotter.XY{X: x.At.Minutes(), Y: l.f(x)}
			}
			ln, err := plotter.NewLine(pts)
			if err != nil {
				return err
			}
			ln.Color = plotutil.Color(j)
			p.Add(ln)
			if len(pn.lines) > 1 {
				p.Legend.Add(l.name, ln)
			}
		}
		p.Legend.Top = true
		plots[i] = []*plot.Plot{p}
	}
	img := vgimg.New(9*vg.Inch, 12*vg.Inch)
	dc := draw.New(img)
	canvases := plot.Align(plots, draw.Tiles{Rows: len(panels), Cols: 1, PadY: vg.Points(8), PadTop: vg.Points(4), PadBottom: vg.Points(4)}, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		return err
	}
	return f.Close()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
