package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// runTable prints the BENCHMARKS.md table of result files, one row
// each, ordered by fleet size, and with --plot draws the cost growth
// with gnuplot.
func runTable(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("thinfleet-sim table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	plot := fs.String("plot", "", "write a PNG plot of the figures against fleet size (needs gnuplot: apt-get install gnuplot-nox)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var rs []results
	for _, p := range fs.Args() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r results
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return fmt.Errorf("no result files given")
	}
	slices.SortStableFunc(rs, func(a, b results) int { return a.Agents - b.Agents })
	fmt.Fprintln(stdout, "| agents | server RSS | CPU while heartbeating | alive in API: hold min–end; after connecting | fan-out p50 / p99 | rollout downloads: thinfleet / nginx (ratio), CPU per MiB ratio | mass disconnect → notAlive | silent → notAlive | API p99 | /clients p99 | load avg |")
	fmt.Fprintln(stdout, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range rs {
		row := []string{fmt.Sprint(r.Agents), "–", "–"}
		if r.Hold != nil && r.Server.RSSMiB > 0 {
			row[1], row[2] = fmt.Sprintf("%.0f MiB", r.Server.RSSMiB), fmt.Sprintf("%.0f%%", 100*r.Server.CPUHeartbeating)
		}
		alive := fmt.Sprintf("all after %.1f s", r.Connect.AllAlive)
		if r.Connect.Alive < r.Agents {
			alive = fmt.Sprintf("%d after %.0f s, never all", r.Connect.Alive, r.Connect.AllAlive)
		}
		if r.Hold != nil {
			alive = fmt.Sprintf("%d–%d; %s", r.Hold.AliveMin, r.Hold.AliveEnd, alive)
		}
		row = append(row, alive)
		if f := r.Fanout; f != nil {
			row = append(row, fmt.Sprintf("%.2f / %.2f s (%d offered)", f.P50, f.P99, f.Offered))
		} else {
			row = append(row, "–")
		}
		if ro := r.Rollout; ro != nil && ro.Burst != nil && ro.Nginx != nil {
			cell := fmt.Sprintf("%.2f / %.2f s (%.1f×), %.1f×", ro.Burst.Seconds, ro.Nginx.Seconds, ro.Ratio, ro.CPURatio)
			if ro.Burst.Verified < ro.Burst.Clients || ro.Nginx.Verified < ro.Nginx.Clients {
				cell += fmt.Sprintf("; verified %d / %d of %d", ro.Burst.Verified, ro.Nginx.Verified, ro.Burst.Clients)
			}
			row = append(row, cell)
		} else {
			row = append(row, "–")
		}
		for _, g := range []*goneFigs{r.Disconnect, r.Silent} {
			if g != nil {
				row = append(row, fmt.Sprintf("%.1f s (%d)", g.AllNotAlive, g.Group))
			} else {
				row = append(row, "–")
			}
		}
		if a := r.API; a != nil {
			row = append(row, fmt.Sprintf("%.0f ms", 1000*a.Devices.P99), fmt.Sprintf("%.0f ms", 1000*a.Clients.P99))
		} else {
			row = append(row, "–", "–")
		}
		row = append(row, r.LoadStart)
		fmt.Fprintln(stdout, "| "+strings.Join(row, " | ")+" |")
	}
	if *plot != "" {
		return plotPNG(rs, *plot)
	}
	return nil
}

// plotPNG draws RSS, CPU and fan-out p99 against fleet size with gnuplot.
func plotPNG(rs []results, out string) error {
	dir, err := os.MkdirTemp("", "thinfleet-sim-plot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var data strings.Builder
	// "?" is a figure the run did not get; gnuplot leaves it out.
	figure := func(ok bool, v float64) string {
		if !ok {
			return "?"
		}
		return fmt.Sprintf("%.3f", v)
	}
	for _, r := range rs {
		held := r.Hold != nil && r.Server.RSSMiB > 0
		fmt.Fprintf(&data, "%d %s %s %s %s\n", r.Agents,
			figure(held, r.Server.RSSMiB), figure(held, 100*r.Server.CPUHeartbeating),
			figure(r.Fanout != nil && r.Fanout.Offered > 0, fanoutP99(r)),
			figure(r.API != nil && r.API.Devices.Requests > r.API.Devices.Errors, apiP99(r)))
	}
	dat := filepath.Join(dir, "figures.dat")
	if err := os.WriteFile(dat, []byte(data.String()), 0o644); err != nil {
		return err
	}
	script := fmt.Sprintf(`set terminal pngcairo size 1100,750 font ",10"
set output %q
set multiplot layout 2,2 title "thinfleet server against fleet size (thinfleet-sim)"
set grid
set datafile missing "?"
set xrange [0:*]
set yrange [0:*]
set xlabel "agents"
set key off
set title "server RSS (MiB)"
plot %[2]q using 1:2 with linespoints pt 7 lw 2
set title "server CPU while heartbeating (%% of one core)"
plot %[2]q using 1:3 with linespoints pt 7 lw 2
set title "offer fan-out p99 (s)"
plot %[2]q using 1:4 with linespoints pt 7 lw 2
set title "GET /api/v1/devices p99 under 20 at once (s)"
plot %[2]q using 1:5 with linespoints pt 7 lw 2
unset multiplot
`, out, dat)
	cmd := exec.Command("gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot (apt-get install gnuplot-nox): %v: %s", err, b)
	}
	return nil
}

func fanoutP99(r results) float64 {
	if r.Fanout == nil {
		return 0
	}
	return r.Fanout.P99
}

func apiP99(r results) float64 {
	if r.API == nil {
		return 0
	}
	return r.API.Devices.P99
}
