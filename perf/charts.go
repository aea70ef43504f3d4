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
	p := plot.New()
	p.Title.Text = "midge / mosquitto (medians; triangle = target; for latency lower is better)"
	p.Y.Label.Text = "ratio"
	p.Y.Min = 0
	p.Y.Max = math.Max(maxOf(vals), 5) * 1.1
	bars, err := plotter.NewBarChart(vals, vg.Points(22))
	if err != nil {
		return "", err
	}
	bars.Color = color.RGBA{R: 60, G: 120, B: 200, A: 255}
	p.Add(bars)
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Color = color.Gray{Y: 90}
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(one)
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
