package main

import (
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or writes it there with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestProgressBar(t *testing.T) {
	tests := []struct {
		name  string
		c     fleet.WaveCounts
		color bool
		want  string
	}{
		{"no device yet", fleet.WaveCounts{}, false, "[          ]"},
		{"all waiting", fleet.WaveCounts{Devices: 5, Waiting: 5}, false, "[..........]"},
		{"done", fleet.WaveCounts{Devices: 3, Succeeded: 3}, false, "[##########]"},
		{"canary failing", fleet.WaveCounts{Devices: 10, Succeeded: 7, Failed: 3}, false, "[#######xxx]"},
		{"every kind", fleet.WaveCounts{Devices: 10, Succeeded: 4, Failed: 1, InProgress: 2, Waiting: 3}, false, "[####x>>...]"},
		// 2.5 cells each: the remainders go to the first kinds.
		{"halves", fleet.WaveCounts{Devices: 4, Succeeded: 1, InProgress: 1, Waiting: 2}, false, "[###>>.....]"},
		// One failure in a thousand still shows.
		{"one failure in a thousand", fleet.WaveCounts{Devices: 1000, Succeeded: 999, Failed: 1}, false, "[#########x]"},
		{"one in progress among many waiting", fleet.WaveCounts{Devices: 500, InProgress: 1, Waiting: 499}, false, "[>.........]"},
		// Devices counted in no kind are blank.
		{"devices not yet counted", fleet.WaveCounts{Devices: 10, Succeeded: 2}, false, "[##        ]"},
		{"colour", fleet.WaveCounts{Devices: 10, Succeeded: 5, Failed: 5}, true, "[\x1b[32m#####\x1b[0m\x1b[31mxxxxx\x1b[0m]"},
		{"negative counts ignored", fleet.WaveCounts{Devices: 2, Succeeded: 2, Failed: -1}, false, "[##########]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := progressBar(tt.c, 10, tt.color)
			if got != tt.want {
				t.Errorf("progressBar(%+v, 10) = %q, want %q", tt.c, got, tt.want)
			}
			if !tt.color && len(got) != 12 {
				t.Errorf("progressBar is %d wide, want 10 cells and 2 brackets", len(got))
			}
		})
	}
}

// testRollout is a rollout paused by its canary's failures.
func testRollout() rolloutView {
	created := time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)
	r := rolloutView{Rollout: fleet.Rollout{
		ID: "kiosk-1-3", Version: "1.3.0", Selector: fleet.Selector{Match: fleet.Labels{"site": "berlin"}},
		Waves: []fleet.Wave{
			{Name: "canary", Percent: 10, SuccessPercent: 90, ErrorPercent: 20, Opened: created,
				Counts: fleet.WaveCounts{Devices: 10, Succeeded: 6, Failed: 3, InProgress: 1}},
			{Name: "half", Percent: 50, SuccessPercent: 90, ErrorPercent: 20, Counts: fleet.WaveCounts{Devices: 40, Waiting: 40}},
			{Name: "all", Percent: 100, SuccessPercent: 90, ErrorPercent: 20, Counts: fleet.WaveCounts{Devices: 50, Waiting: 50}},
		},
		MaxConcurrent: 5, State: fleet.RolloutPaused,
		Reason: "wave canary: 3 of 10 devices failed (30%), more than 20%",
		By:     "admin (api) from 127.0.0.1", Created: created, Updated: created.Add(7 * time.Minute),
	}}
	r.Counts = r.Rollout.Counts()
	return r
}

// TestRenderStatus draws a rollout's status as the snapshot of "thinfleet
// rollout status" shows it (testdata/rollout-status.golden), and in a
// terminal's colours.
func TestRenderStatus(t *testing.T) {
	r := testRollout()
	got := renderStatus(r, statusStyle{loc: time.UTC})
	golden(t, "rollout-status.golden", got)
	if strings.Contains(got, "\x1b") {
		t.Error("the plain snapshot has terminal controls")
	}
	colored := renderStatus(r, statusStyle{loc: time.UTC, color: true})
	if !strings.Contains(colored, red+"xxxxxxx"+reset) {
		t.Errorf("the terminal's canary bar shows no failures in red:\n%s", colored)
	}

	// A rollout done with its first wave and running its second, whose
	// waves differ in thresholds, with a hostile reason.
	r.State, r.Wave, r.MaxConcurrent = fleet.RolloutRunning, 1, 0
	r.Reason = "bad\x1b[2Jnews"
	r.Waves[0].Done, r.Waves[0].ErrorPercent = r.Created.Add(time.Minute), 0
	r.Waves[1].Soak = fleet.Duration(10 * time.Minute)
	got = renderStatus(r, statusStyle{loc: time.UTC})
	for _, want := range []string{
		"State:   running: bad?[2Jnews\n",
		"canary  10%   10       6          3       1            0        done      ",
		"half    50%   40       0          0       0            40       open      ",
		"all     100%  50       0          0       0            50       not open  ",
		"Wave canary goes on at 90% succeeded.\nWave half goes on at 90% succeeded, pauses the rollout at 20% failed, after 10m0s.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "Limit:") || strings.Contains(got, "\x1b") {
		t.Errorf("status shows a limit it has not, or a terminal control:\n%s", got)
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args      []string
		wantWords string
		wantOnce  bool
		wantErr   bool
	}{
		{[]string{"r1"}, "r1", false, false},
		{[]string{"r1", "--once"}, "r1", true, false},
		{[]string{"--once", "r1"}, "r1", true, false},
		{[]string{"r1", "--reason", "x y", "1.2"}, "r1 1.2", false, false},
		{[]string{"r1", "--", "--once"}, "r1 --once", false, false},
		{[]string{"r1", "--bogus"}, "", false, true},
		{nil, "", false, false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(&strings.Builder{})
		once := fs.Bool("once", false, "")
		fs.String("reason", "", "")
		words, err := parseInterspersed(fs, tt.args)
		if (err != nil) != tt.wantErr || strings.Join(words, " ") != tt.wantWords || *once != tt.wantOnce {
			t.Errorf("parseInterspersed(%q) = %q, once %v, err %v; want %q, once %v, error %v",
				tt.args, words, *once, err, tt.wantWords, tt.wantOnce, tt.wantErr)
		}
	}
}

// TestRolloutCreateSpec turns create's flags into the rollout asked for:
// no waves (the server's default) unless --waves, --success or --errors
// asks for others.
func TestRolloutCreateSpec(t *testing.T) {
	tests := []struct {
		args    string
		want    string // the spec's waves and scope, or the error
		wantErr bool
	}{
		{"--version 1.3", "waves [] selector all group ", false},
		{"--version 1.3 --selector site=berlin,ring=canary", "waves [] selector ring=canary,site=berlin group ", false},
		{"--version 1.3 --group kiosks --max-concurrent 3", "waves [] selector all group kiosks", false},
		{"--version 1.3 --errors 30", "waves [canary 10% 90/30, half 50% 90/30, all 100% 90/30] selector all group ", false},
		{"--version 1.3 --waves canary:[ring=canary],50,100 --success 80", "waves [canary [ring=canary] 80/20, wave 50% 80/20, wave 100% 80/20] selector all group ", false},
		{"--version 1.3 --waves 10,x", "--waves: wave 2 \"x\": want a percent (10) or a selector ([ring=canary])", true},
		{"--selector a=b", "--version: name the version to roll out", true},
		{"--version 1.3 --selector a=b --group g", "--selector and --group: choose the devices one way", true},
		{"--version 1.3 --selector =b", "--selector: selector \"=b\": label key \"\": want 1 to 63 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", true},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		var o rolloutCreateOptions
		o.register(fs)
		if err := fs.Parse(strings.Fields(tt.args)); err != nil {
			t.Fatal(err)
		}
		spec, err := o.spec("r1")
		var got string
		if err != nil {
			got = err.Error()
		} else {
			var ws []string
			for _, w := range spec.Waves {
				name := w.Name
				if name == "" {
					name = "wave"
				}
				ws = append(ws, name+" "+waveSize(w)+" "+strconv.Itoa(w.SuccessPercent)+"/"+strconv.Itoa(w.ErrorPercent))
			}
			got = "waves [" + strings.Join(ws, ", ") + "] selector " + spec.Selector.String() + " group " + spec.Group
		}
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("create %s:\n got %s\nwant %s", tt.args, got, tt.want)
		}
	}
}
