package pages

import (
	"strconv"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// The rollout chart's geometry, in SVG units of its viewBox: the plot
// with room at the left for the device counts and below for the times.
const (
	areaWidth  = 900
	areaHeight = 240
	areaLeft   = 44
	areaRight  = 12
	areaTop    = 10
	areaBottom = 34
)

// AreaChart is a rollout's counts over time laid out as stacked areas:
// succeeded at the bottom, then failed, in progress and waiting, so the
// top edge is every device in the rollout.
type AreaChart struct {
	ViewBox string
	Layers  []AreaLayer
	// Grid are the horizontal lines with their counts; Times the labels
	// under the plot; Waves a line where each wave opened.
	Grid  []ChartMark
	Times []ChartMark
	Waves []ChartMark
	// Left, Right, Top and Bottom are the plot's edges.
	Left, Right, Top, Bottom int
	// Summary says in words what the chart shows, for screen readers.
	Summary string
}

// AreaLayer is one band of the chart.
type AreaLayer struct {
	Class  string // succeeded, failed, progress or waiting
	Points string // the polygon, in SVG points syntax
}

// ChartMark is a labelled position on the chart.
type ChartMark struct {
	X, Y  int
	Label string
	// Anchor is the label's text-anchor: start, middle or end.
	Anchor string
}

// RolloutChart lays out r's samples. It reports false when there is
// nothing to draw yet: no sample, or no device. The last sample is drawn
// on to now (to its last change, for a rollout completed or aborted), so
// the chart reaches the present.
func RolloutChart(r fleet.Rollout, now time.Time) (AreaChart, bool) {
	samples := r.Samples
	if len(samples) == 0 {
		return AreaChart{}, false
	}
	most := 0
	for _, s := range samples {
		most = max(most, s.Devices, s.Succeeded+s.Failed+s.InProgress+s.Waiting)
	}
	if most == 0 {
		return AreaChart{}, false
	}
	end := now
	if (r.State == fleet.RolloutCompleted || r.State == fleet.RolloutAborted) && !r.Updated.IsZero() {
		end = r.Updated
	}
	last := samples[len(samples)-1]
	if end.After(last.Time) {
		extra := last
		extra.Time = end
		samples = append(samples[:len(samples):len(samples)], extra)
	}
	start, stop := samples[0].Time, samples[len(samples)-1].Time
	if !stop.After(start) {
		stop = start.Add(time.Second)
	}
	c := AreaChart{
		ViewBox: "0 0 " + itoa(areaWidth) + " " + itoa(areaHeight),
		Left:    areaLeft, Right: areaWidth - areaRight, Top: areaTop, Bottom: areaHeight - areaBottom,
	}
	x := func(t time.Time) float64 {
		return float64(c.Left) + float64(c.Right-c.Left)*float64(t.Sub(start))/float64(stop.Sub(start))
	}
	y := func(n int) float64 {
		return float64(c.Bottom) - float64(c.Bottom-c.Top)*float64(n)/float64(most)
	}
	// Each band lies on the ones below it: its top edge left to right,
	// then the top edge of the bands below right to left.
	bands := []struct {
		class string
		count func(fleet.Sample) int
	}{
		{"succeeded", func(s fleet.Sample) int { return s.Succeeded }},
		{"failed", func(s fleet.Sample) int { return s.Failed }},
		{"progress", func(s fleet.Sample) int { return s.InProgress }},
		{"waiting", func(s fleet.Sample) int { return max(s.Waiting, s.Devices-s.Succeeded-s.Failed-s.InProgress) }},
	}
	below := make([]int, len(samples))
	for _, b := range bands {
		var pts strings.Builder
		top := make([]int, len(samples))
		for i, s := range samples {
			top[i] = below[i] + b.count(s)
			point(&pts, x(s.Time), y(top[i]))
		}
		for i := len(samples) - 1; i >= 0; i-- {
			point(&pts, x(samples[i].Time), y(below[i]))
		}
		c.Layers = append(c.Layers, AreaLayer{Class: b.class, Points: strings.TrimSpace(pts.String())})
		below = top
	}
	for _, n := range []int{0, most / 2, most} {
		if n == most/2 && most < 4 {
			continue // too close to the others to read
		}
		c.Grid = append(c.Grid, ChartMark{X: c.Left - 6, Y: int(y(n)), Label: itoa(n), Anchor: "end"})
	}
	layout := "15:04"
	if stop.Sub(start) < 10*time.Minute {
		layout = "15:04:05"
	}
	if stop.Sub(start) > 24*time.Hour {
		layout = "Jan 2 15:04"
	}
	c.Times = []ChartMark{
		{X: c.Left, Y: c.Bottom + 20, Label: start.UTC().Format(layout), Anchor: "start"},
		{X: c.Right, Y: c.Bottom + 20, Label: stop.UTC().Format(layout) + " UTC", Anchor: "end"},
	}
	for i, w := range r.Waves {
		if w.Opened.IsZero() || i == 0 || w.Opened.Before(start) || w.Opened.After(stop) {
			continue
		}
		c.Waves = append(c.Waves, ChartMark{X: int(x(w.Opened)), Y: c.Top + 12, Label: w.Name, Anchor: "start"})
	}
	f := samples[len(samples)-1]
	c.Summary = "Devices of the rollout over time, from " + Clock(start) + " to " + Clock(stop) + ": now " +
		itoa(f.Succeeded) + " succeeded, " + itoa(f.Failed) + " failed, " + itoa(f.InProgress) + " in progress, " +
		itoa(f.Waiting) + " waiting."
	return c, true
}

func point(b *strings.Builder, x, y float64) {
	b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
	b.WriteByte(',')
	b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
	b.WriteByte(' ')
}

// BarPart is one colour of a rollout's progress bar, in percent of its
// width.
type BarPart struct {
	Class    string
	X, Width string
}

// ProgressBar lays out a stacked bar of c: succeeded, failed, in
// progress, and waiting as the rest.
func ProgressBar(c fleet.WaveCounts) []BarPart {
	total := max(c.Devices, c.Succeeded+c.Failed+c.InProgress+c.Waiting)
	if total == 0 {
		return nil
	}
	var parts []BarPart
	at := 0.0
	for _, p := range []struct {
		class string
		n     int
	}{{"succeeded", c.Succeeded}, {"failed", c.Failed}, {"progress", c.InProgress}} {
		if p.n == 0 {
			continue
		}
		w := 100 * float64(p.n) / float64(total)
		parts = append(parts, BarPart{Class: p.class, X: strconv.FormatFloat(at, 'f', 2, 64), Width: strconv.FormatFloat(w, 'f', 2, 64)})
		at += w
	}
	return parts
}
