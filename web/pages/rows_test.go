package pages

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

func TestHistoryRows(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ev := func(s int, dev string, k fleet.EventKind, version, detail string) fleet.Event {
		return fleet.Event{Time: at(s), Device: dev, Event: k, Version: version, Detail: detail}
	}
	const (
		offered     = fleet.EventOffered
		downloading = fleet.EventDownloading
		verifying   = fleet.EventVerifying
		installing  = fleet.EventInstalling
		installed   = fleet.EventInstalled
		failed      = fleet.EventFailed
	)
	link := "http://fleet.example:8080/downloads/u-2.0.zip?exp=1800000000&sig=" + strings.Repeat("ab", 32)
	tests := []struct {
		name string
		// events oldest first, as they happened; HistoryRows gets them
		// newest first, as the store gives them.
		events []fleet.Event
		// want: each row as "device version kind: steps | detail", newest
		// first; a step as kind@seconds.
		want []string
	}{
		{
			name: "an install is one row",
			events: []fleet.Event{
				ev(0, "a", offered, "2.0", "offer O1, from 1.0"),
				ev(1, "a", downloading, "2.0", ""),
				ev(5, "a", verifying, "2.0", ""),
				ev(6, "a", installing, "2.0", ""),
				ev(9, "a", installed, "2.0", ""),
			},
			want: []string{"a 2.0 installed: offered@0 downloading@1 verifying@5 installing@6 installed@9 | from 1.0; took 9s [O1]"},
		},
		{
			name: "a failure shows its reason on one line, without the link's signature",
			events: []fleet.Event{
				ev(0, "a", offered, "2.0", "offer O1, from no version"),
				ev(1, "a", downloading, "2.0", ""),
				ev(3, "a", failed, "2.0", "download: Get \""+link+"\":\n  dial tcp: connection refused"),
			},
			want: []string{`a 2.0 failed: offered@0 downloading@1 failed@3 | download: Get "http://fleet.example:8080/downloads/u-2.0.zip": dial tcp: connection refused [O1]`},
		},
		{
			name: "devices interleave; a row sits where its newest event is",
			events: []fleet.Event{
				ev(0, "a", offered, "2.0", "offer O1, from 1.0"),
				ev(0, "b", offered, "2.0", "offer O2, from 1.0"),
				ev(1, "b", downloading, "2.0", ""),
				ev(1, "a", downloading, "2.0", ""),
				ev(2, "a", installed, "2.0", ""),
				ev(3, "b", connected(), "", "from 10.0.0.2"),
				ev(4, "b", installing, "2.0", ""),
			},
			want: []string{
				"b 2.0 installing: offered@0 downloading@1 installing@4 | from 1.0 [O2]",
				"b connected | from 10.0.0.2",
				"a 2.0 installed: offered@0 downloading@1 installed@2 | from 1.0; took 2s [O1]",
			},
		},
		{
			name: "offers repeated before the device acts, and while it installs, join the install",
			events: []fleet.Event{
				ev(0, "a", offered, "2.0", "offer O1, from 1.0"),
				ev(10, "a", offered, "2.0", "offer O2, from 1.0"),
				ev(20, "a", offered, "2.0", "offer O3, from 1.0"),
				ev(21, "a", downloading, "2.0", ""),
				ev(22, "a", offered, "2.0", "offer O4, from 1.0"),
				ev(23, "a", installed, "2.0", ""),
			},
			want: []string{"a 2.0 installed: offered×3@0 downloading@21 installed@23 | from 1.0; took 23s [O1 O2 O3 O4]"},
		},
		{
			name: "a retry after a failure is a row of its own",
			events: []fleet.Event{
				ev(0, "a", offered, "2.0", "offer O1, from 1.0"),
				ev(1, "a", downloading, "2.0", ""),
				ev(2, "a", failed, "2.0", "sha256 mismatch"),
				ev(30, "a", offered, "2.0", "offer O2, from 1.0, trying a failed install again"),
				ev(31, "a", downloading, "2.0", ""),
				ev(32, "a", installed, "2.0", ""),
			},
			want: []string{
				"a 2.0 installed retry: offered@30 downloading@31 installed@32 | from 1.0; took 2s [O2]",
				"a 2.0 failed older: offered@0 downloading@1 failed@2 | sha256 mismatch [O1]",
			},
		},
		{
			name: "an operator's offer again is a retry",
			events: []fleet.Event{
				ev(0, "a", offered, "1.0", "offered again by an operator, a rollback"),
				ev(1, "a", downloading, "1.0", ""),
			},
			want: []string{"a 1.0 downloading retry: offered@0 downloading@1 | offered again by an operator, a rollback"},
		},
		{
			name: "what the offer says of a pin or a rollout stays",
			events: []fleet.Event{
				ev(0, "a", offered, "2.0", "offer O1, from 1.0, rollout canary, wave 1"),
				ev(1, "b", offered, "1.0", "offer O2, from 2.0, a rollback, pinned to 1.0"),
				ev(2, "a", installed, "2.0", ""),
			},
			want: []string{
				"a 2.0 installed: offered@0 installed@2 | from 1.0; rollout canary, wave 1; took 2s [O1]",
				"b 1.0 offered: offered@1 | from 2.0; a rollback, pinned to 1.0 [O2]",
			},
		},
		{
			name: "a step that goes back starts over and leaves the first unfinished",
			events: []fleet.Event{
				ev(0, "a", offered, "2.0", "offer O1, from 1.0"),
				ev(1, "a", downloading, "2.0", ""),
				ev(2, "a", installing, "2.0", ""),
				ev(60, "a", downloading, "2.0", ""),
				ev(61, "a", installed, "2.0", ""),
			},
			want: []string{
				"a 2.0 installed: downloading@60 installed@61 | took 1s",
				"a 2.0 installing unfinished older: offered@0 downloading@1 installing@2 | from 1.0 [O1]",
			},
		},
		{
			name: "an install cut off by the page shows the steps there are",
			events: []fleet.Event{
				ev(1, "a", installing, "2.0", ""),
				ev(2, "a", failed, "2.0", "command exited with status 3 (output: disk full)"),
			},
			want: []string{"a 2.0 failed: installing@1 failed@2 | command exited with status 3 (output: disk full)"},
		},
		{
			name: "each version of a device is an install of its own",
			events: []fleet.Event{
				ev(0, "a", offered, "2.0", "offer O1, from 1.0"),
				ev(1, "a", offered, "2.1", "offer O2, from 1.0"),
				ev(2, "a", downloading, "2.1", ""),
			},
			want: []string{
				"a 2.1 downloading: offered@1 downloading@2 | from 1.0 [O2]",
				"a 2.0 offered older: offered@0 | from 1.0 [O1]",
			},
		},
		{
			name: "other events stay as they are, their links redacted",
			events: []fleet.Event{
				ev(0, "a", fleet.EventRegistered, "", "hostname kiosk"),
				ev(1, "a", fleet.EventHeldBack, "2.0", "held back after 5 failed installs; last: GET "+link+": 404"),
			},
			want: []string{
				"a 2.0 held_back | held back after 5 failed installs; last: GET http://fleet.example:8080/downloads/u-2.0.zip: 404",
				"a registered | hostname kiosk",
			},
		},
		{name: "no events", events: nil, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.events)
			slices.Reverse(in)
			got := []string{}
			for _, r := range HistoryRows(in) {
				got = append(got, showRow(r, t0))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func connected() fleet.EventKind { return fleet.EventConnected }

func showRow(r HistoryRow, t0 time.Time) string {
	s := r.Device + " " + r.Version + " " + string(r.Kind)
	if r.Retry {
		s += " retry"
	}
	if r.Unfinished {
		s += " unfinished"
	}
	if r.Install() && !r.Newest {
		s += " older"
	}
	if r.Install() {
		var steps []string
		for _, st := range r.Steps {
			k := string(st.Kind)
			if st.Count > 1 {
				k += fmt.Sprintf("×%d", st.Count)
			}
			steps = append(steps, fmt.Sprintf("%s@%d", k, int(st.Time.Sub(t0)/time.Second)))
		}
		s += ": " + strings.Join(steps, " ")
	}
	s += " | " + r.Detail
	if len(r.Offers) > 0 {
		s += " [" + strings.Join(r.Offers, " ") + "]"
	}
	return strings.Join(strings.Fields(s), " ")
}

func TestOneLineCutsAtARune(t *testing.T) {
	long := strings.Repeat("é", maxDetail) // two bytes each
	got := oneLine(long)
	if !strings.HasSuffix(got, "…") || len(got) > maxDetail+len("…") {
		t.Fatalf("oneLine of %d bytes = %d bytes %q…", len(long), len(got), got[:10])
	}
	if strings.ContainsRune(got, '\uFFFD') {
		t.Error("oneLine cut a rune in two")
	}
}
