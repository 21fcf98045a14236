package fleet_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

func rel(version, channel string, platforms ...string) fleet.Release {
	return fleet.Release{Name: "Update " + version, Version: version, SHA256: strings.Repeat(version[:1], 64), Channel: channel, Platforms: platforms}
}

// planCatalog: 3.0-beta on beta, 2.0 and 1.0 stable, 1.5 only for arm64;
// the target 2.0.
var planCatalog = fleet.Catalog{
	Releases: []fleet.Release{rel("3.0-beta", "beta"), rel("2.0", ""), rel("1.5", "", "linux/arm64"), rel("1.0", "stable")},
	Target:   "2.0", TargetReason: "newest valid release",
}

func dev(id, version string, labels ...string) fleet.Device {
	d := fleet.Device{ID: id, Version: version, Alive: true, Labels: fleet.Labels{}}
	d.Hardware.OS, d.Hardware.Arch = "linux", "x86_64"
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		d.Labels[k] = v
	}
	return d
}

func sel(s string) fleet.Selector {
	sel, err := fleet.ParseSelector(s)
	if err != nil {
		panic(err)
	}
	return sel
}

func rollout(id, version string, state fleet.RolloutState, wave int, created int, members map[string]fleet.Member) fleet.Rollout {
	return fleet.Rollout{
		ID: id, Version: version, State: state, Wave: wave, Members: members,
		Waves:   []fleet.Wave{{Name: "canary", Percent: 10}, {Percent: 50}, {Percent: 100}},
		Created: time.Date(2026, 1, created, 0, 0, 0, 0, time.UTC),
	}
}

func TestPlan(t *testing.T) {
	pinned := func(d fleet.Device, v string) fleet.Device {
		d.Pin = &fleet.Pin{Version: v}
		return d
	}
	failedOf := func(d fleet.Device, v string, rs *fleet.Retries) fleet.Device {
		d.Install = &fleet.Install{Version: v, State: wire.StateFailed, Detail: "command exited with 1", Started: time.Unix(100, 0)}
		d.Retries = rs
		return d
	}
	sha2 := rel("2.0", "").SHA256
	retryAt := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	arm := dev("arm", "1.0")
	arm.Hardware.Arch = "aarch64"

	groups := []fleet.Group{
		{Name: "z-beta", Selector: sel("ring=beta"), Channel: "beta"},
		{Name: "a-pinned", Selector: sel("site=museum"), Pin: &fleet.Pin{Version: "1.0"}},
		{Name: "b-beta-too", Selector: sel("site=museum"), Channel: "beta"},
		{Name: "c-stable", Selector: sel("ring=stable-beta"), Channel: "stable"},
		{Name: "d-beta", Selector: sel("ring=stable-beta"), Channel: "beta"},
		{Name: "e-ghost-pin", Selector: sel("site=ghost"), Pin: &fleet.Pin{Version: "9.9"}},
		{Name: "y-lab", Selector: sel("site=lab2")},
	}
	members := map[string]fleet.Member{"m0": {Wave: 0, From: "1.0"}, "m1": {Wave: 1, From: "1.0"}, "m2": {Wave: 2}, "done": {Wave: 0, From: "1.0"}, "pinned-member": {Wave: 0}}
	running := rollout("canary-13", "2.0", fleet.RolloutRunning, 0, 2, members)
	paused := rollout("canary-13", "2.0", fleet.RolloutPaused, 0, 2, members)
	paused.Reason = "wave canary: 3 of 10 installs failed (30%), above its 20% error threshold"
	aborted := rollout("canary-13", "2.0", fleet.RolloutAborted, 1, 2, members)
	rolledBack := rollout("canary-13", "2.0", fleet.RolloutRolledBack, 1, 2, map[string]fleet.Member{"m0": {From: "1.0"}, "m1": {Wave: 1, From: "1.0"}, "fresh": {Wave: 0}, "gone": {From: "0.1"}})
	waitsForZip := rollout("early", "4.0", fleet.RolloutRunning, 0, 1, map[string]fleet.Member{"m0": {}})
	completed := rollout("done-beta", "3.0-beta", fleet.RolloutCompleted, 2, 1, nil)
	completed.Selector = sel("site=lab")
	completedOld := rollout("done-old", "1.5", fleet.RolloutCompleted, 2, 1, nil)
	completedGroup := rollout("done-group", "3.0-beta", fleet.RolloutCompleted, 2, 1, nil)
	completedGroup.Group = "y-lab"
	completedNoGroup := rollout("done-nogroup", "3.0-beta", fleet.RolloutCompleted, 2, 1, nil)
	completedNoGroup.Group = "missing"

	tests := []struct {
		name     string
		d        fleet.Device
		c        *fleet.Catalog
		rollouts []fleet.Rollout
		want     string // "version" offered, "-" for nothing
		why      string // a part of Why
		check    func(t *testing.T, got fleet.Target)
	}{
		{name: "target", d: dev("a", "1.0"), want: "2.0", why: "newest valid release"},
		{name: "runs target", d: dev("a", "2.0"), want: "-", why: "runs 2.0"},
		{name: "newer than target", d: dev("a", "2.1"), want: "-", why: "runs 2.1"},
		{name: "no version yet", d: dev("a", ""), want: "2.0"},
		{name: "no target", d: dev("a", "1.0"), c: &fleet.Catalog{Releases: planCatalog.Releases, TargetReason: "policy refused"}, want: "-", why: "no target: policy refused"},

		{name: "device pin upgrade", d: pinned(dev("a", "1.0"), "3.0-beta"), want: "3.0-beta", why: "pinned to 3.0-beta",
			check: func(t *testing.T, got fleet.Target) {
				if !got.Pinned || got.Rollback {
					t.Errorf("Pinned %v Rollback %v, want a pinned upgrade", got.Pinned, got.Rollback)
				}
			}},
		{name: "device pin downgrade is a rollback", d: pinned(dev("a", "2.0"), "1.0"), want: "1.0", why: "pinned to 1.0",
			check: func(t *testing.T, got fleet.Target) {
				if !got.Rollback || !got.Pinned {
					t.Errorf("Rollback %v Pinned %v, want a pinned rollback", got.Rollback, got.Pinned)
				}
			}},
		{name: "device pin reached", d: pinned(dev("a", "1.0.0"), "1.0"), want: "-", why: "runs 1.0.0"},
		{name: "device pin not in catalog", d: pinned(dev("a", "1.0"), "7.0"), want: "-", why: "pinned to 7.0, which is not in the catalog"},
		{name: "device pin wins over group pin", d: pinned(dev("a", "1.0", "site=museum"), "2.0"), want: "2.0", why: "pinned to 2.0"},
		{name: "device pin of another platform", d: pinned(dev("a", "1.0"), "1.5"), want: "-", why: "1.5 is for linux/arm64, not linux/amd64"},
		{name: "group pin", d: dev("a", "2.0", "site=museum"), want: "1.0", why: "pinned to 1.0 by group a-pinned",
			check: func(t *testing.T, got fleet.Target) {
				if !got.Rollback {
					t.Error("a group's pin below the installed version is not a rollback")
				}
			}},
		{name: "group pin not in catalog", d: dev("a", "1.0", "site=ghost"), want: "-", why: "pinned to 9.9 by group e-ghost-pin, which is not in the catalog"},
		{name: "pinned member is not moved by the rollout", d: pinned(dev("pinned-member", "1.0"), "1.0"), rollouts: []fleet.Rollout{running}, want: "-", why: "runs 1.0",
			check: func(t *testing.T, got fleet.Target) {
				if got.Rollout != "" || !got.Pinned {
					t.Errorf("Rollout %q Pinned %v, want the pin to decide", got.Rollout, got.Pinned)
				}
			}},
		{name: "group pinned member is not moved", d: dev("pinned-member", "2.0", "site=museum"), rollouts: []fleet.Rollout{running}, want: "1.0", why: "by group a-pinned"},

		{name: "member of the open wave", d: dev("m0", "1.0"), rollouts: []fleet.Rollout{running}, want: "2.0", why: "rollout canary-13, wave canary",
			check: func(t *testing.T, got fleet.Target) {
				if got.Rollout != "canary-13" || got.Wave != 0 || got.Release.SHA256 != sha2 {
					t.Errorf("Rollout %q Wave %d SHA %s", got.Rollout, got.Wave, got.Release.SHA256)
				}
			}},
		{name: "member of a wave not open", d: dev("m1", "1.0"), rollouts: []fleet.Rollout{running}, want: "-", why: "waiting for wave 2 of rollout canary-13"},
		{name: "member of a later open wave", d: dev("m1", "1.0"), rollouts: []fleet.Rollout{rollout("canary-13", "2.0", fleet.RolloutRunning, 2, 2, members)}, want: "2.0", why: "wave 2"},
		{name: "not a member: gated even though 2.0 is the target", d: dev("x", "1.0"), rollouts: []fleet.Rollout{running}, want: "-", why: "not in rollout canary-13 of 2.0"},
		{name: "not a member, channel gives another release", d: dev("x", "1.0", "ring=beta"), rollouts: []fleet.Rollout{running}, want: "3.0-beta", why: "channel beta of group z-beta"},
		{name: "member that runs the release", d: dev("done", "2.0"), rollouts: []fleet.Rollout{running}, want: "-", why: "runs 2.0"},
		{name: "paused", d: dev("m0", "1.0"), rollouts: []fleet.Rollout{paused}, want: "-", why: "rollout canary-13 paused: wave canary: 3 of 10"},
		{name: "paused, not a member", d: dev("x", "1.0"), rollouts: []fleet.Rollout{paused}, want: "-", why: "rollout canary-13 paused"},
		{name: "aborted", d: dev("m2", "1.0"), rollouts: []fleet.Rollout{aborted}, want: "-", why: "rollout canary-13 aborted"},
		{name: "aborted does not move back who got it", d: dev("m0", "2.0"), rollouts: []fleet.Rollout{aborted}, want: "-", why: "runs 2.0"},
		{name: "rolled back: back to From", d: dev("m0", "2.0"), rollouts: []fleet.Rollout{rolledBack}, want: "1.0", why: "rolled back to 1.0",
			check: func(t *testing.T, got fleet.Target) {
				if !got.Rollback {
					t.Error("a rollback offer is not marked Rollback")
				}
			}},
		{name: "rolled back: from no version", d: dev("fresh", "2.0"), rollouts: []fleet.Rollout{rolledBack}, want: "-", why: "ran no version before"},
		{name: "rolled back: From not in catalog", d: dev("gone", "2.0"), rollouts: []fleet.Rollout{rolledBack}, want: "-", why: "rolled back to 0.1, which is not in the catalog"},
		{name: "rolled back: member never moved", d: dev("m1", "1.0"), rollouts: []fleet.Rollout{rolledBack}, want: "-", why: "rollout canary-13 rolled back"},
		{name: "rolled back: not a member", d: dev("x", "1.0"), rollouts: []fleet.Rollout{rolledBack}, want: "-", why: "rollout canary-13 rolled back"},
		{name: "release not in catalog yet", d: dev("m0", "1.0"), rollouts: []fleet.Rollout{waitsForZip, running}, want: "-", why: "rollout early waits for release 4.0"},
		{name: "earliest rollout first", d: dev("m0", "1.0"), rollouts: []fleet.Rollout{running, rollout("later", "3.0-beta", fleet.RolloutRunning, 0, 9, members)}, want: "2.0", why: "rollout canary-13"},
		{name: "member of the second rollout", d: dev("m0", "1.0"), rollouts: []fleet.Rollout{rollout("later", "3.0-beta", fleet.RolloutRunning, 0, 9, members), rollout("canary-13", "2.0", fleet.RolloutRunning, 0, 2, map[string]fleet.Member{})}, want: "3.0-beta", why: "rollout later"},
		{name: "version matched as a version", d: dev("x", "1.0"), rollouts: []fleet.Rollout{rollout("canary-13", "2.0.0", fleet.RolloutRunning, 0, 2, members)}, want: "-", why: "not in rollout canary-13"},
		{name: "member of another platform", d: func() fleet.Device { d := arm; d.ID = "m0"; d.Hardware.Arch = "riscv64"; return d }(), rollouts: []fleet.Rollout{rollout("p", "1.5", fleet.RolloutRunning, 0, 2, members)}, want: "-", why: "1.5 is for linux/arm64, not linux/riscv64",
			check: func(t *testing.T, got fleet.Target) {
				if !got.HeldBack {
					t.Error("not HeldBack")
				}
			}},

		{name: "completed rollout in scope", d: dev("a", "1.0", "site=lab"), rollouts: []fleet.Rollout{completed}, want: "3.0-beta", why: "rollout done-beta completed"},
		{name: "completed rollout out of scope", d: dev("a", "1.0", "site=home"), rollouts: []fleet.Rollout{completed}, want: "2.0"},
		{name: "completed rollout older than the target", d: dev("a", "1.0"), rollouts: []fleet.Rollout{completedOld}, want: "2.0"},
		{name: "completed rollout by group", d: dev("a", "1.0", "site=lab2"), rollouts: []fleet.Rollout{completedGroup}, want: "3.0-beta", why: "rollout done-group completed"},
		{name: "completed rollout of a missing group", d: dev("a", "1.0"), rollouts: []fleet.Rollout{completedNoGroup}, want: "2.0"},
		{name: "completed rollout gated by an active one", d: dev("a", "1.0", "site=lab"), rollouts: []fleet.Rollout{completed, rollout("again", "3.0-beta", fleet.RolloutPaused, 0, 5, nil)}, want: "-", why: "rollout again paused"},

		{name: "channel", d: dev("a", "1.0", "ring=beta"), want: "3.0-beta", why: "channel beta of group z-beta"},
		{name: "first group by name decides the channel", d: dev("a", "1.0", "ring=stable-beta"), want: "2.0", why: "newest valid release"},
		{name: "channel older than target", d: dev("a", "1.0", "ring=beta"), c: &fleet.Catalog{Releases: []fleet.Release{rel("2.0", ""), rel("1.5-beta", "Beta")}, Target: "2.0"}, want: "2.0"},
		{name: "channel with no release", d: dev("a", "1.0", "ring=beta"), c: &fleet.Catalog{Releases: []fleet.Release{rel("2.0", "")}, Target: "2.0"}, want: "2.0"},
		{name: "tag over label", d: func() fleet.Device {
			d := dev("a", "1.0", "ring=stable")
			d.Tags = fleet.Labels{"ring": "beta"}
			return d
		}(), want: "3.0-beta"},

		{name: "platform", d: arm, c: &fleet.Catalog{Releases: planCatalog.Releases, Target: "1.5"}, want: "1.5"},
		{name: "another platform", d: dev("a", "1.0"), c: &fleet.Catalog{Releases: planCatalog.Releases, Target: "1.5"}, want: "-", why: "1.5 is for linux/arm64, not linux/amd64"},
		{name: "failed, retry planned", d: failedOf(dev("a", "1.0"), "2.0", &fleet.Retries{Version: "2.0", SHA256: sha2, Failures: 1, Tries: 5, Counted: time.Unix(100, 0), Next: retryAt}), want: "2.0", why: "try 2 of 5",
			check: func(t *testing.T, got fleet.Target) {
				if !got.Retry || !got.NotBefore.Equal(retryAt) {
					t.Errorf("Retry %v NotBefore %v, want a retry at %v", got.Retry, got.NotBefore, retryAt)
				}
			}},
		{name: "failed, uncounted", d: failedOf(dev("a", "1.0"), "2.0", nil), want: "-", why: "the next try is being planned"},
		{name: "held back", d: failedOf(dev("a", "1.0"), "2.0", &fleet.Retries{Version: "2.0", SHA256: sha2, Failures: 5, Tries: 5, Counted: time.Unix(100, 0), HeldBack: true}), want: "-", why: "held back after 5 failed installs",
			check: func(t *testing.T, got fleet.Target) {
				if !got.HeldBack || got.Release.Version != "2.0" {
					t.Errorf("HeldBack %v Release %q, want held back from 2.0", got.HeldBack, got.Release.Version)
				}
			}},
		{name: "rollout member held back", d: failedOf(dev("m0", "1.0"), "2.0", &fleet.Retries{Version: "2.0", SHA256: sha2, Failures: 5, Tries: 5, Counted: time.Unix(100, 0), HeldBack: true}), rollouts: []fleet.Rollout{running}, want: "-", why: "held back",
			check: func(t *testing.T, got fleet.Target) {
				if got.Rollout != "canary-13" {
					t.Errorf("Rollout %q", got.Rollout)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := planCatalog
			if tt.c != nil {
				c = *tt.c
			}
			got := fleet.Plan(tt.d, c, groups, tt.rollouts)
			gotV := "-"
			if got.OK {
				gotV = got.Release.Version
			}
			if gotV != tt.want {
				t.Errorf("offers %s (%q), want %s", gotV, got.Why, tt.want)
			}
			if !strings.Contains(got.Why, tt.why) {
				t.Errorf("Why %q, want it to say %q", got.Why, tt.why)
			}
			if got.Why == "" {
				t.Error("Why is empty")
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

func TestWindowOpen(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	// 2026-01-05 is a Monday.
	at := func(day, hour, minute int, loc *time.Location) time.Time {
		return time.Date(2026, 1, day, hour, minute, 0, 0, loc)
	}
	night := fleet.Window{Days: []string{"mon"}, Start: "22:00", End: "02:00", Zone: "Europe/Berlin"}
	tests := []struct {
		name string
		w    fleet.Window
		t    time.Time
		want bool
	}{
		{"inside", fleet.Window{Start: "02:00", End: "04:00"}, at(5, 3, 0, time.UTC), true},
		{"at start", fleet.Window{Start: "02:00", End: "04:00"}, at(5, 2, 0, time.UTC), true},
		{"at end", fleet.Window{Start: "02:00", End: "04:00"}, at(5, 4, 0, time.UTC), false},
		{"before", fleet.Window{Start: "02:00", End: "04:00"}, at(5, 1, 59, time.UTC), false},
		{"in the zone", fleet.Window{Start: "02:00", End: "04:00", Zone: "Europe/Berlin"}, at(5, 1, 30, time.UTC), true},
		{"not in UTC", fleet.Window{Start: "02:00", End: "04:00", Zone: "Europe/Berlin"}, at(5, 3, 30, time.UTC), false},
		{"summer time", fleet.Window{Start: "02:00", End: "04:00", Zone: "Europe/Berlin"}, time.Date(2026, 7, 6, 0, 30, 0, 0, time.UTC), true},
		{"day listed", fleet.Window{Days: []string{"Mon", "wed"}, Start: "02:00", End: "04:00"}, at(5, 3, 0, time.UTC), true},
		{"day not listed", fleet.Window{Days: []string{"tue"}, Start: "02:00", End: "04:00"}, at(5, 3, 0, time.UTC), false},
		{"sunday", fleet.Window{Days: []string{"sun"}, Start: "02:00", End: "04:00"}, at(4, 3, 0, time.UTC), true},
		{"midnight: evening of its day", night, at(5, 23, 0, berlin), true},
		{"midnight: after midnight belongs to the day before", night, at(6, 1, 0, berlin), true},
		{"midnight: after midnight of the wrong day", night, at(5, 1, 0, berlin), false},
		{"midnight: at its end", night, at(6, 2, 0, berlin), false},
		{"midnight: in between", night, at(5, 12, 0, berlin), false},
		{"midnight: evening of another day", night, at(6, 23, 0, berlin), false},
		{"start is end: the whole day", fleet.Window{Days: []string{"mon"}, Start: "00:00", End: "00:00"}, at(5, 13, 0, time.UTC), true},
		{"start is end: another day", fleet.Window{Days: []string{"mon"}, Start: "00:00", End: "00:00"}, at(6, 13, 0, time.UTC), false},
		{"bad zone", fleet.Window{Start: "00:00", End: "23:59", Zone: "Mars/Olympus"}, at(5, 13, 0, time.UTC), false},
		{"bad time", fleet.Window{Start: "2am", End: "04:00"}, at(5, 3, 0, time.UTC), false},
		{"bad day", fleet.Window{Days: []string{"someday"}, Start: "02:00", End: "04:00"}, at(5, 3, 0, time.UTC), false},
	}
	for _, tt := range tests {
		if got := tt.w.Open(tt.t); got != tt.want {
			t.Errorf("%s: %v Open(%v) = %v, want %v", tt.name, tt.w, tt.t, got, tt.want)
		}
	}
}

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String of the result
		wantErr string
	}{
		{in: "", want: "all"},
		{in: " all ", want: "all"},
		{in: "*", want: "all"},
		{in: "site=berlin", want: "site=berlin"},
		{in: " ring = canary , site=berlin", want: "ring=canary,site=berlin"},
		{in: "site=berlin,", want: "site=berlin"},
		{in: ",", want: "all"},
		{in: "gpu", want: "gpu="},
		{in: "site=berlin,site=berlin", want: "site=berlin"},
		{in: "site=berlin,site=paris", wantErr: `site is both "berlin" and "paris"`},
		{in: "site=ber lin", wantErr: "value"},
		{in: "=berlin", wantErr: "label key"},
		{in: "site!=berlin", wantErr: "label key"},
	}
	for _, tt := range tests {
		got, err := fleet.ParseSelector(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSelector(%q) error %v, want one saying %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("ParseSelector(%q): %v", tt.in, err)
		case got.String() != tt.want:
			t.Errorf("ParseSelector(%q) = %q, want %q", tt.in, got.String(), tt.want)
		}
	}
	d := dev("a", "1.0", "site=berlin", "ring=canary")
	d.Tags = fleet.Labels{"ring": "stable"}
	for s, want := range map[string]bool{"site=berlin": true, "ring=canary": false, "ring=stable,site=berlin": true, "site=paris": false, "all": true, "gpu": false} {
		if got := sel(s).Matches(d); got != want {
			t.Errorf("%q matches %v: %v, want %v", s, d.AllLabels(), got, want)
		}
	}
	if !(fleet.Selector{IDs: []string{"a"}}).Matches(d) || (fleet.Selector{IDs: []string{"b"}}).Matches(d) {
		t.Error("a selection by id does not choose by id")
	}
}

// BenchmarkPlan is one device's plan, with groups and a running rollout
// of 1,000 members: the decision makes one for every device on every
// change.
func BenchmarkPlan(b *testing.B) {
	members := map[string]fleet.Member{}
	for i := range 1000 {
		members[fmt.Sprintf("kiosk-%04d", i)] = fleet.Member{Wave: i % 3, From: "1.0"}
	}
	groups := []fleet.Group{
		{Name: "beta", Selector: sel("ring=beta"), Channel: "beta"},
		{Name: "museum", Selector: sel("site=museum"), Pin: &fleet.Pin{Version: "1.0"}},
		{Name: "plant", Selector: sel("site=plant"), Window: &fleet.Window{Start: "02:00", End: "04:00", Zone: "Europe/Berlin"}},
	}
	rollouts := []fleet.Rollout{rollout("canary-13", "2.0", fleet.RolloutRunning, 1, 2, members)}
	d := dev("kiosk-0001", "1.0", "site=berlin", "ring=stable")
	b.ReportAllocs()
	for b.Loop() {
		if t := fleet.Plan(d, planCatalog, groups, rollouts); !t.OK {
			b.Fatal(t.Why)
		}
	}
}
