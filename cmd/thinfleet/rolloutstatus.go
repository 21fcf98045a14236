package main

// thinfleet rollout status: one snapshot of a rollout, or, in a
// terminal, its progress redrawn in place while it runs.

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// rolloutStatusOptions are "thinfleet rollout status"'s (with --json).
type rolloutStatusOptions struct {
	once  bool
	every time.Duration
}

func (o *rolloutStatusOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.once, "once", false, "status: print one snapshot, also in a terminal")
	fs.DurationVar(&o.every, "interval", time.Second, "status: how often a terminal's progress is redrawn")
}

// runRolloutStatus prints a rollout's status, or follows it in a
// terminal.
func runRolloutStatus(ctx context.Context, c *apiClient, o *rolloutOptions, e env, words []string) error {
	id := words[0]
	switch {
	case o.json:
		return rolloutError(id, printJSON(ctx, c, rolloutPath(id), e.stdout))
	case o.status.once || !isTerminal(e.stdout):
		r, err := getRollout(ctx, c, id)
		if err != nil {
			return err
		}
		_, err = io.WriteString(e.stdout, renderStatus(r, statusStyle{loc: time.Local}))
		return err
	}
	if o.status.every < 100*time.Millisecond {
		return fmt.Errorf("--interval %v: at least 100ms", o.status.every)
	}
	return watchRollout(ctx, c, id, e.stdout, o.status.every, statusStyle{loc: time.Local, color: true})
}

// getRollout asks the server for rollout id.
func getRollout(ctx context.Context, c *apiClient, id string) (rolloutView, error) {
	var r rolloutView
	if err := c.get(ctx, rolloutPath(id), &r); err != nil {
		return r, rolloutError(id, err)
	}
	return r, nil
}

// The terminal's controls that watchRollout draws with.
const (
	// upAndClear moves the cursor up %d lines and clears from there down.
	upAndClear = "\x1b[%dA\x1b[J"
	// Lines longer than the terminal is wide are cut, not wrapped, so
	// that the lines drawn are the lines to go back up.
	noWrap, wrap = "\x1b[?7l", "\x1b[?7h"
	hideCursor   = "\x1b[?25l"
	showCursor   = "\x1b[?25h"
)

// watchRollout draws rollout id's status on the terminal w, and redraws
// it in place every interval, until the rollout stops running
// (completed, paused, aborted, rolled back) or ctx ends (Ctrl-C, which
// ends the watch without error; the rollout goes on).
func watchRollout(ctx context.Context, c *apiClient, id string, w io.Writer, every time.Duration, st statusStyle) error {
	io.WriteString(w, noWrap+hideCursor)
	defer io.WriteString(w, wrap+showCursor)
	drawn := 0
	for {
		r, err := getRollout(ctx, c, id)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		block := renderStatus(r, st)
		if r.State == fleet.RolloutRunning {
			block += fmt.Sprintf("\nas of %s; Ctrl-C stops watching (the rollout goes on)\n", time.Now().In(st.loc).Format(time.TimeOnly))
		}
		if drawn > 0 {
			fmt.Fprintf(w, upAndClear, drawn)
		}
		io.WriteString(w, block)
		drawn = strings.Count(block, "\n")
		if r.State != fleet.RolloutRunning {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// isTerminal reports whether w is a terminal: a character device, and
// not the null device, which is one too.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return os.Getenv("TERM") != "dumb"
}

// statusStyle is how renderStatus draws.
type statusStyle struct {
	// loc is the time zone of the times shown.
	loc *time.Location
	// color draws the bars in colours (a terminal's).
	color bool
}

// barWidth is the cells of a progress bar.
const barWidth = 24

// renderStatus is rollout r's status for people: what it rolls out to
// whom, its state and the reason, and each wave's counts and progress.
func renderStatus(r rolloutView, st statusStyle) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Rollout %s: %s to %s\n", r.ID, r.Version, rolloutScope(r.Rollout))
	fmt.Fprintf(&b, "State:   %s", stateWords(r.State))
	if r.Reason != "" {
		fmt.Fprintf(&b, ": %s", printable(r.Reason))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Created: %s", r.Created.In(st.loc).Format("2006-01-02 15:04:05 MST"))
	if r.By != "" {
		fmt.Fprintf(&b, " by %s", printable(r.By))
	}
	b.WriteString("\n")
	if r.MaxConcurrent > 0 {
		fmt.Fprintf(&b, "Limit:   at most %d installs at once\n", r.MaxConcurrent)
	}
	b.WriteString("\n")

	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tSIZE\tDEVICES\tSUCCEEDED\tFAILED\tIN PROGRESS\tWAITING\tSTATE\tPROGRESS")
	for i, w := range r.Waves {
		c := w.Counts
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", w.Name, waveSize(w), c.Devices, c.Succeeded, c.Failed, c.InProgress, c.Waiting,
			waveState(r.Rollout, i), progress(c, st.color))
	}
	if len(r.Waves) > 1 {
		c := r.Counts
		fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%d\t%d\t\t%s\n", c.Devices, c.Succeeded, c.Failed, c.InProgress, c.Waiting, progress(c, st.color))
	}
	tw.Flush()
	if t := thresholds(r.Waves); t != "" {
		b.WriteString("\n" + t + "\n")
	}
	return b.String()
}

// waveState says where wave i of r stands: done, open (offered the
// release while the rollout runs) or not yet open.
func waveState(r fleet.Rollout, i int) string {
	switch w := r.Waves[i]; {
	case !w.Done.IsZero():
		return "done"
	case i <= r.Wave:
		return "open"
	}
	return "not open"
}

// thresholds says when the waves go on and when they pause the rollout:
// in one sentence when every wave has the same thresholds.
func thresholds(ws []fleet.Wave) string {
	if len(ws) == 0 {
		return ""
	}
	one := func(w fleet.Wave) string {
		s := fmt.Sprintf("goes on at %d%% succeeded", cmp.Or(w.SuccessPercent, 100))
		if w.ErrorPercent > 0 {
			s += fmt.Sprintf(", pauses the rollout at %d%% failed", w.ErrorPercent)
		}
		if w.Soak > 0 {
			s += fmt.Sprintf(", after %v", time.Duration(w.Soak))
		}
		return s
	}
	same := true
	for _, w := range ws[1:] {
		same = same && one(w) == one(ws[0])
	}
	if same {
		return "Each wave " + one(ws[0]) + "."
	}
	var lines []string
	for _, w := range ws {
		lines = append(lines, fmt.Sprintf("Wave %s %s.", w.Name, one(w)))
	}
	return strings.Join(lines, "\n")
}

// progress is a bar of c and the percent of its devices that succeeded.
func progress(c fleet.WaveCounts, color bool) string {
	pct := 0
	if c.Devices > 0 {
		pct = c.Succeeded * 100 / c.Devices // 199 of 200 is 99%, not 100%
	}
	return fmt.Sprintf("%s %3d%%", progressBar(c, barWidth, color), pct)
}

// The cells of a progress bar, and their colours in a terminal.
const (
	cellSucceeded, cellFailed, cellInProgress, cellWaiting = '#', 'x', '>', '.'
	green, red, yellow, dim, reset                         = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[2m", "\x1b[0m"
)

// progressBar draws c's devices in width cells between brackets:
// succeeded (#), failed (x), in progress (>) and waiting (.), in that
// order, each in proportion, and blanks for devices counted in none of
// them; a kind with any device gets at least one cell, so that one
// failure among a thousand shows. A wave with no device yet is all
// blank.
func progressBar(c fleet.WaveCounts, width int, color bool) string {
	kinds := []struct {
		n     int
		cell  rune
		color string
	}{{c.Succeeded, cellSucceeded, green}, {c.Failed, cellFailed, red}, {c.InProgress, cellInProgress, yellow}, {c.Waiting, cellWaiting, dim}, {0, ' ', ""}}
	total := 0
	for i := range kinds {
		kinds[i].n = max(kinds[i].n, 0)
		total += kinds[i].n
	}
	if c.Devices > total {
		kinds[len(kinds)-1].n, total = c.Devices-total, c.Devices
	}
	if total == 0 {
		return "[" + strings.Repeat(" ", width) + "]"
	}
	// Cells in proportion (largest remainders), then at least one for
	// each kind present, taken from the largest.
	cells := make([]int, len(kinds))
	left := width
	for i, k := range kinds {
		cells[i] = k.n * width / total
		left -= cells[i]
	}
	for ; left > 0; left-- {
		best := -1
		for i, k := range kinds {
			rem := k.n*width - cells[i]*total
			if k.n > 0 && (best < 0 || rem > kinds[best].n*width-cells[best]*total) {
				best = i
			}
		}
		cells[best]++
	}
	for i, k := range kinds[:4] {
		if k.n > 0 && cells[i] == 0 {
			largest := 0
			for j := range cells {
				if cells[j] > cells[largest] {
					largest = j
				}
			}
			if cells[largest] > 1 {
				cells[largest]--
				cells[i]++
			}
		}
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, k := range kinds {
		if cells[i] == 0 {
			continue
		}
		if color && k.color != "" {
			b.WriteString(k.color)
		}
		b.WriteString(strings.Repeat(string(k.cell), cells[i]))
		if color && k.color != "" {
			b.WriteString(reset)
		}
	}
	b.WriteByte(']')
	return b.String()
}
