package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// charts draws the ratio chart and the latency chart next to base and
// returns their file names.
func (rep *report) charts(base string) ([]string, error) {
	var names []string
	if name, err := rep.ratioChart(base + "-ratios.png"); err != nil {
		return nil, err
	} else if name != "" {
		names = append(names, name)
	}
	if name, err := rep.latencyChart(base + "-latency.png"); err != nil {
		return nil, err
	} else if name != "" {
		names = append(names, name)
	}
	return names, nil
}

// ratioChart plots midge/mosquitto for every row with a target, with the target beside each bar and 1× as a line.
func (rep *report) ratioChart(path string) (string, error) {
	var (
		vals    plotter.Values
		labels  []string
		targets plotter.XYs
	)
	for _, rw := range rep.rows {
		perCPU := rw.Metric.Name == "msgs per broker CPU-s" && rw.Scenario != "latency"
		if rw.Ratio <= 0 || (rw.Metric.Target == 0 && !perCPU) {
			continue
		}
		vals = append(vals, rw.Ratio)
		labels = append(labels, fmt.Sprintf("%s %s", rw.Scenario, rw.Metric.Name))
		if rw.Metric.Target > 0 {
			targets = append(targets, plotter.XY{X: float64(len(vals) - 1), Y: rw.Metric.Target})
		}
	}
	if len(vals) == 0 {
		return "", nil
	}
	return barChart(path, "midge / mosquitto (medians; triangle = target; for latency lower is better)", "ratio", labels, vals, targets, true, 5)
}

// barChart draws vals as bars over labels, targets (X: the bar's index) as
// triangles and, with one, a dashed line at 1; the Y axis reaches minTop at
// least.
func barChart(path, title, ylabel string, labels []string, vals plotter.Values, targets plotter.XYs, one bool, minTop float64) (string, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	top := maxOf(vals)
	for _, t := range targets {
		top = math.Max(top, t.Y)
	}
	p.Y.Max = math.Max(top, minTop) * 1.1
	bars, err := plotter.NewBarChart(vals, vg.Points(22))
	if err != nil {
		return "", err
	}
	bars.Color = color.RGBA{R: 60, G: 120, B: 200, A: 255}
	p.Add(bars)
	if one {
		line := plotter.NewFunction(func(float64) float64 { return 1 })
		line.Color = color.Gray{Y: 90}
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(line)
	}
	if len(targets) > 0 {
		sc, err := plotter.NewScatter(targets)
		if err != nil {
			return "", err
		}
		sc.GlyphStyle.Shape = draw.PyramidGlyph{}
		sc.GlyphStyle.Radius = vg.Points(5)
		sc.GlyphStyle.Color = color.RGBA{R: 200, G: 40, B: 40, A: 255}
		p.Add(sc)
	}
	p.NominalX(labels...)
	p.X.Tick.Label.Rotation = math.Pi / 5
	p.X.Tick.Label.XAlign = draw.XRight
	p.X.Tick.Label.YAlign = draw.YCenter
	if err := p.Save(10*vg.Inch, 5*vg.Inch, path); err != nil {
		return "", err
	}
	return filepath.Base(path), nil
}

// charter draws a bar chart beside a report (its base path and suffix)
// and returns the markdown that shows it, or "" (logged) when it could not.
type charter func(suffix, title, ylabel string, labels []string, vals []float64, targets map[int]float64) string

func newCharter(base string, logf func(string, ...any)) charter {
	return func(suffix, title, ylabel string, labels []string, vals []float64, targets map[int]float64) string {
		var ts plotter.XYs
		for i, t := range targets {
			ts = append(ts, plotter.XY{X: float64(i), Y: t})
		}
		name, err := barChart(base+"-"+suffix+".png", title, ylabel, labels, vals, ts, ylabel == "ratio", 1.2)
		if err != nil || name == "" {
			logf("chart %s: %v", suffix, err)
			return ""
		}
		return fmt.Sprintf("\n![%s](%s)\n", suffix, name)
	}
}

// latencyChart plots each broker's latency percentiles (medians of runs).
func (rep *report) latencyChart(path string) (string, error) {
	labels := []string{"p50", "p90", "p99", "p99.9", "max"}
	p := plot.New()
	p.Title.Text = "one-way latency, 10 pairs at 10,000 msg/s (median of runs)"
	p.Y.Label.Text = "µs"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	drawn := 0
	for i, br := range rep.brokers {
		var pts plotter.XYs
		for j, l := range labels {
			for _, rw := range rep.rows {
				if rw.Scenario == "latency" && rw.Metric.Name == l {
					if s := rw.Stats[br.Name]; s.N > 0 && s.Median > 0 {
						pts = append(pts, plotter.XY{X: float64(j), Y: s.Median})
					}
				}
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return "", err
		}
		line.Color = plotutil.Color(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(br.Name, line, points)
		drawn++
	}
	if drawn == 0 {
		return "", nil
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.NominalX(labels...)
	if err := p.Save(7*vg.Inch, 4*vg.Inch, path); err != nil {
		return "", err
	}
	return filepath.Base(path), nil
}

func maxOf(v plotter.Values) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}
