package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// seedState writes a state folder as a previous run left it.
func seedState(t *testing.T, dir string, change func(*state)) {
	t.Helper()
	s, err := openStore(filepath.Join(dir, "state.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.update(change); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptedInstall(t *testing.T) {
	tests := []struct {
		name          string
		before        int  // interruptions of 1.1 before this one
		wantGivenUp   bool // 1.1 recorded as failed
		wantReinstall bool // a new offer of 1.1 installs it
	}{
		{name: "first time", before: 0, wantReinstall: true},
		{name: "second time", before: 1, wantReinstall: true},
		{name: "third time gives up", before: 2, wantGivenUp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFleet(t, -1)
			z := newZipServer(t)
			dir := t.TempDir()
			seedState(t, dir, func(s *state) {
				s.Version, s.PreviousVersion = "1.0", "0.9"
				s.Installing = &installing{Version: "1.1", OfferID: "offer-1.1", StartedAt: time.Now()}
				if tt.before > 0 {
					s.Interrupted = &interrupted{Version: "1.1", Count: tt.before}
				}
			})
			writeFile(t, filepath.Join(dir, "staging", "1.1-dead", "half.txt"), "half extracted")
			oldPart := filepath.Join(dir, "downloads", strings.Repeat("a", 64)+".part")
			freshPart := filepath.Join(dir, "downloads", strings.Repeat("b", 64)+".part")
			writeFile(t, oldPart, "stale")
			writeFile(t, freshPart, "resume me")
			eightDays := time.Now().Add(-8 * 24 * time.Hour)
			if err := os.Chtimes(oldPart, eightDays, eightDays); err != nil {
				t.Fatal(err)
			}

			ta := startAgent(t, f.url(), Options{StateDir: dir})
			waitReady(t, f, "dev-1", 1)
			st := lastStatus(f, "dev-1", "1.1")
			if st.State != wire.StateFailed || !strings.HasPrefix(st.Detail, "interrupted: agent stopped during install") || st.OfferID != "offer-1.1" {
				t.Errorf("status at start = %+v, want failed, interrupted", st)
			}
			if v := f.versions("dev-1")[0]; v.Version != "1.0" || v.PreviousVersion != "0.9" {
				t.Errorf("version reported = %+v, want 1.0 over 0.9", v)
			}
			if got := listDir(t, filepath.Join(dir, "staging")); len(got) > 0 {
				t.Errorf("staging after start = %v, want empty", got)
			}
			if got, want := listDir(t, filepath.Join(dir, "downloads")), []string{filepath.Base(freshPart)}; !slices.Equal(got, want) {
				t.Errorf("downloads after start = %v, want only the recent %v", got, want)
			}
			s := ta.store.get()
			if _, failed := s.failed("1.1"); failed != tt.wantGivenUp || s.Installing != nil {
				t.Errorf("state: 1.1 failed = %v, marker %+v; want failed %v and no marker", failed, s.Installing, tt.wantGivenUp)
			}

			offer := z.put("/u.zip", "1.1", "true", makeZip(t, "1.1", "true", map[string]string{}))
			f.offer("dev-1", offer)
			if tt.wantReinstall {
				waitFor(t, "1.1 installed on the next offer", func() (bool, string) {
					return lastStatus(f, "dev-1", "1.1").State == wire.StateInstalled, ""
				})
				return
			}
			waitFor(t, "the offer of 1.1 ignored", func() (bool, string) {
				return ta.log.contains("offer ignored", "version=1.1 ", "failed before"), ""
			})
			if got := steps(f.statuses("dev-1"), "1.1"); !slices.Equal(got, []string{"failed"}) {
				t.Errorf("statuses of 1.1 = %v, want the one failed at start", got)
			}
		})
	}
}

func TestOfferRules(t *testing.T) {
	f := startFleet(t, -1)
	z := newZipServer(t)
	dir := t.TempDir()
	seedState(t, dir, func(s *state) {
		s.Version = "2.0"
		s.recordFailure("2.5", "command failed: exit status 1", time.Now())
	})
	ta := startAgent(t, f.url(), Options{StateDir: dir})
	waitReady(t, f, "dev-1", 1)
	offer := func(version string, edit func(*wire.Offer)) wire.Offer {
		o := z.put("/"+version+".zip", version, "true", makeZip(t, version, "true", map[string]string{}))
		edit(&o)
		return o
	}
	none := func(*wire.Offer) {}

	ignored := []struct {
		offer wire.Offer
		why   string
	}{
		{offer("1.0", none), "older than the installed 2.0"},
		{offer("2.0.0", none), "already installed"},
		{offer("2.0", func(o *wire.Offer) { o.Rollback = true }), "already installed"},
		{offer("2.5", none), "failed before"},
	}
	for _, tt := range ignored {
		f.offer("dev-1", tt.offer)
		waitFor(t, tt.offer.Version+" ignored", func() (bool, string) {
			return ta.log.contains("offer ignored", "version="+tt.offer.Version+" ", tt.why), ""
		})
	}
	for _, v := range []string{"1.0", "2.0.0", "2.0", "2.5"} {
		if got := steps(f.statuses("dev-1"), v); len(got) > 0 {
			t.Errorf("an ignored offer of %s got statuses %v", v, got)
		}
	}

	// What the flags allow: a rollback, then a retry of the failed version.
	f.offer("dev-1", offer("1.0", func(o *wire.Offer) { o.Rollback = true }))
	waitFor(t, "rollback to 1.0", func() (bool, string) { return done(f, "dev-1", "1.0") })
	f.offer("dev-1", offer("2.5", func(o *wire.Offer) { o.Retry = true }))
	waitFor(t, "retry of 2.5", func() (bool, string) { return done(f, "dev-1", "2.5") })
	for _, v := range []string{"1.0", "2.5"} {
		if got, want := steps(f.statuses("dev-1"), v), []string{"downloading", "verifying", "installing", "installed"}; !slices.Equal(got, want) {
			t.Errorf("steps of %s = %v, want %v", v, got, want)
		}
	}
	if s := ta.store.get(); s.Version != "2.5" || s.PreviousVersion != "1.0" || len(s.Failed) != 0 {
		t.Errorf("state = %+v, want 2.5 over 1.0 and no failures", s)
	}
	if got := listDir(t, filepath.Join(dir, "releases")); !slices.Equal(got, []string{"1.0", "2.5"}) {
		t.Errorf("releases = %v, want the installed and the previous one", got)
	}
}

func TestRefuseOffer(t *testing.T) {
	st := state{Version: "1.10", Failed: []failure{{Version: "2.0", Reason: "exit status 1"}}}
	tests := []struct {
		version         string
		retry, rollback bool
		want            string // a word of the reason; "" to install
	}{
		{version: "1.11"},
		{version: "1.9", want: "older"},
		{version: "1.10.0", want: "already installed"},
		{version: "1.10", rollback: true, want: "already installed"},
		{version: "1.9", rollback: true},
		{version: "2.0", want: "failed before"},
		{version: "2.0.0", want: "failed before"},
		{version: "2.0", retry: true},
		{version: "2.0-beta", want: ""},
	}
	for _, tt := range tests {
		o := wire.Offer{Version: tt.version, Retry: tt.retry, Rollback: tt.rollback}
		got := refuseOffer(o, st)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("refuseOffer(%s retry=%v rollback=%v) = %q, want %q", tt.version, tt.retry, tt.rollback, got, tt.want)
		}
	}
	if got := refuseOffer(wire.Offer{Version: "0.1"}, state{}); got != "" {
		t.Errorf("a new machine refuses 0.1: %q", got)
	}
}
