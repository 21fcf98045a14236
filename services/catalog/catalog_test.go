package catalog_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/catalog"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
	"github.com/thinfleet/thinfleet/store"
)

// zipOf returns a zip holding the given files, stored uncompressed with a
// fixed time, so equal-length contents give equal-length zips.
func zipOf(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: files[i], Method: zip.Store, Modified: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(files[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// release returns a valid update zip of version.
func release(t *testing.T, version string) []byte {
	return zipOf(t,
		"manifest.json", fmt.Sprintf(`{"name": "Update %s", "version": %q, "command": "sh install.sh"}`, version, version),
		"install.sh", "echo installing "+version+"\n")
}

// drop puts data in dir as name the way an operator should: written
// beside it, then renamed in.
func drop(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

type env struct {
	dir   string
	store *store.Store
}

// setup makes an updates folder and a store; start runs the service.
func setup(t *testing.T) env {
	dir := filepath.Join(t.TempDir(), "updates")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return env{dir: dir, store: natstest.Start(t, natstest.Options{}).Store()}
}

func (e env) start(t *testing.T, rescan time.Duration) (stop func()) {
	s, err := catalog.New(catalog.Options{Metrics: natstest.Metrics, Log: natstest.Logger(t), Store: e.store, Dir: e.dir, Rescan: rescan})
	if err != nil {
		t.Fatal(err)
	}
	return natstest.Run(t, s.Run)
}

// wait waits until the stored catalog satisfies cond, and returns it.
func (e env) wait(t *testing.T, cond func(c fleet.Catalog) error) fleet.Catalog {
	t.Helper()
	var c fleet.Catalog
	natstest.Eventually(t, 10*time.Second, func() error {
		var err error
		if c, err = e.store.Catalog(context.Background()); err != nil {
			return err
		}
		if c.Updated.IsZero() {
			return fmt.Errorf("no catalog yet")
		}
		return cond(c)
	})
	return c
}

// files lists the releases as file=version, newest first.
func files(c fleet.Catalog) string {
	var out []string
	for _, r := range c.Releases {
		out = append(out, r.File+"="+r.Version)
	}
	return strings.Join(out, " ")
}

func refused(c fleet.Catalog) string {
	var out []string
	for _, r := range c.Refused {
		out = append(out, r.File)
	}
	return strings.Join(out, " ")
}

// is checks the releases, refusals and target of a catalog.
func is(releases, refusals, target string) func(c fleet.Catalog) error {
	return func(c fleet.Catalog) error {
		if files(c) != releases || refused(c) != refusals || c.Target != target {
			return fmt.Errorf("releases %q refused %q target %q (%s); want %q, %q, %q",
				files(c), refused(c), c.Target, c.TargetReason, releases, refusals, target)
		}
		return nil
	}
}

func TestTarget(t *testing.T) {
	tests := []struct {
		name   string
		zips   map[string]string // file: version
		policy *string
		target string
		reason string
	}{
		{name: "newest, as a version", zips: map[string]string{"a.zip": "1.9.0", "b.zip": "1.10.0"},
			target: "1.10.0", reason: "newest valid release"},
		{name: "pre-release below release", zips: map[string]string{"a.zip": "2.0-beta", "b.zip": "2.0"},
			target: "2.0", reason: "newest valid release"},
		{name: "nothing", zips: nil, target: "", reason: "no valid release in the updates folder"},
		{name: "pinned", zips: map[string]string{"a.zip": "1.9.0", "b.zip": "1.10.0"}, policy: ptr("1.9.0\n"),
			target: "1.9.0", reason: "pinned by updates/target"},
		{name: "pinned, shorter spelling", zips: map[string]string{"a.zip": "1.9.0", "b.zip": "1.10.0"}, policy: ptr("1.9"),
			target: "1.9.0", reason: "pinned by updates/target"},
		{name: "pinned after blanks and comments", zips: map[string]string{"a.zip": "1.9.0", "b.zip": "1.10.0"},
			policy: ptr("\n  \n# back to the last good one\n  1.9.0  \n2.0\n"), target: "1.9.0", reason: "pinned by updates/target"},
		{name: "pinned version missing", zips: map[string]string{"a.zip": "1.9.0", "b.zip": "1.10.0"}, policy: ptr("3.0\n"),
			target: "", reason: "updates/target refused: version 3.0 is not a valid release in the folder; nothing is offered"},
		{name: "policy not a version", zips: map[string]string{"b.zip": "1.10.0"}, policy: ptr("latest"),
			target: "", reason: `updates/target refused: "latest" is not a version; nothing is offered`},
		{name: "empty policy", zips: map[string]string{"b.zip": "1.10.0"}, policy: ptr("\n\n"),
			target: "1.10.0", reason: "newest valid release"},
		{name: "newest of the stable channel", zips: map[string]string{"a.zip": "1.9.0@stable", "b.zip": "1.10.0@beta", "c.zip": "1.8"},
			target: "1.9.0", reason: "newest valid release"},
		{name: "no stable release", zips: map[string]string{"b.zip": "1.10.0@beta"},
			target: "", reason: "no valid release of the stable channel; only groups that follow a channel are offered theirs"},
		{name: "pinned to another channel", zips: map[string]string{"a.zip": "1.9.0", "b.zip": "1.10.0@beta"}, policy: ptr("1.10.0"),
			target: "1.10.0", reason: "pinned by updates/target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			for name, v := range tt.zips {
				v, channel, _ := strings.Cut(v, "@")
				drop(t, e.dir, name, zipOf(t,
					"manifest.json", fmt.Sprintf(`{"name": "Update %s", "version": %q, "channel": %q, "command": "sh install.sh"}`, v, v, channel),
					"install.sh", "echo installing\n"))
			}
			if tt.policy != nil {
				write(t, e.dir, catalog.PolicyFile, []byte(*tt.policy))
			}
			e.start(t, time.Hour)
			c := e.wait(t, func(fleet.Catalog) error { return nil })
			if c.Target != tt.target || c.TargetReason != tt.reason {
				t.Errorf("target %q (%s), want %q (%s)", c.Target, c.TargetReason, tt.target, tt.reason)
			}
			if len(c.Releases) != len(tt.zips) {
				t.Errorf("releases %q", files(c))
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestFolder changes the folder under a running service, which sees it
// through fsnotify alone: its rescan is an hour away.
func TestFolder(t *testing.T) {
	e := setup(t)
	a, b := release(t, "1.9.0"), release(t, "1.10.0")
	drop(t, e.dir, "a.zip", a)
	drop(t, e.dir, "b.zip", b)
	// Not releases, and not refusals either.
	write(t, e.dir, "README.md", []byte("# updates\n"))
	write(t, e.dir, ".hidden.zip", []byte("junk"))
	write(t, e.dir, "b.zip.sig", []byte("junk"))
	write(t, e.dir, "c.zip.part", []byte("junk"))
	write(t, e.dir, "~c.zip", []byte("junk"))
	write(t, e.dir, ".zip", []byte("junk"))
	e.start(t, time.Hour)

	first := e.wait(t, is("b.zip=1.10.0 a.zip=1.9.0", "", "1.10.0"))
	if first.TargetReason != "newest valid release" {
		t.Errorf("reason %q", first.TargetReason)
	}
	want := []fleet.Release{
		{Name: "Update 1.10.0", Version: "1.10.0", SHA256: sum(b), Size: int64(len(b)), Command: "sh install.sh", File: "b.zip", SignatureState: fleet.SignatureUnsigned},
		{Name: "Update 1.9.0", Version: "1.9.0", SHA256: sum(a), Size: int64(len(a)), Command: "sh install.sh", File: "a.zip", SignatureState: fleet.SignatureUnsigned},
	}
	for i, r := range first.Releases {
		if r.Added.IsZero() {
			t.Errorf("release %s: Added not set", r.File)
		}
		r.Added = time.Time{}
		if fmt.Sprint(r) != fmt.Sprint(want[i]) {
			t.Errorf("release %d:\n got %+v\nwant %+v", i, r, want[i])
		}
	}

	steps := []struct {
		name   string
		change func()
		want   func(fleet.Catalog) error
	}{
		{"bad zip refused", func() { drop(t, e.dir, "bad.zip", []byte("this is no zip")) },
			is("b.zip=1.10.0 a.zip=1.9.0", "bad.zip", "1.10.0")},
		{"same version twice", func() { drop(t, e.dir, "dup.zip", release(t, "1.9")) },
			is("b.zip=1.10.0 a.zip=1.9.0", "bad.zip dup.zip", "1.10.0")},
		{"pinned", func() { write(t, e.dir, "target", []byte("1.9.0\n")) },
			is("b.zip=1.10.0 a.zip=1.9.0", "bad.zip dup.zip", "1.9.0")},
		{"pinned to a missing version", func() { write(t, e.dir, "target", []byte("3.0\n")) },
			// Refused: the target stays what it was.
			func(c fleet.Catalog) error {
				if !strings.Contains(c.TargetReason, "refused") {
					return fmt.Errorf("reason %q: the file is not read yet", c.TargetReason)
				}
				return is("b.zip=1.10.0 a.zip=1.9.0", "bad.zip dup.zip", "1.9.0")(c)
			}},
		{"policy removed", func() { remove(t, e.dir, "target") },
			is("b.zip=1.10.0 a.zip=1.9.0", "bad.zip dup.zip", "1.10.0")},
		{"zip written in place", func() { write(t, e.dir, "d.zip", release(t, "2.0.0")) },
			is("d.zip=2.0.0 b.zip=1.10.0 a.zip=1.9.0", "bad.zip dup.zip", "2.0.0")},
		{"zip removed", func() { remove(t, e.dir, "b.zip") },
			is("d.zip=2.0.0 a.zip=1.9.0", "bad.zip dup.zip", "2.0.0")},
		{"newest removed", func() { remove(t, e.dir, "d.zip") },
			is("a.zip=1.9.0", "bad.zip dup.zip", "1.9.0")},
		{"refused ones removed", func() { remove(t, e.dir, "bad.zip"); remove(t, e.dir, "dup.zip") },
			is("a.zip=1.9.0", "", "1.9.0")},
	}
	for _, s := range steps {
		s.change()
		c := e.wait(t, s.want)
		for _, r := range c.Refused {
			if r.Reason == "" || r.Time.IsZero() {
				t.Errorf("%s: refused %s without reason or time", s.name, r.File)
			}
			if r.File == "dup.zip" && r.Reason != "version 1.9 is already provided by a.zip, which stays the release; remove dup.zip or give it another version" {
				t.Errorf("%s: dup.zip refused for %q", s.name, r.Reason)
			}
		}
		switch s.name {
		case "bad zip refused":
			// Nothing else changed, not even when releases were added.
			for i := range c.Releases {
				if c.Releases[i].Added != first.Releases[i].Added || c.Releases[i].SHA256 != first.Releases[i].SHA256 {
					t.Errorf("%s: release %s changed", s.name, c.Releases[i].File)
				}
			}
			if !strings.Contains(c.Refused[0].Reason, "not a zip archive") {
				t.Errorf("bad.zip refused for %q", c.Refused[0].Reason)
			}
		case "pinned to a missing version":
			if !strings.Contains(c.TargetReason, "3.0") {
				t.Errorf("reason %q does not name the pinned version", c.TargetReason)
			}
		}
	}
}

func TestRefused(t *testing.T) {
	e := setup(t)
	good := release(t, "1.0.0")
	drop(t, e.dir, "good.zip", good)
	zips := map[string]struct {
		data   []byte
		reason string
	}{
		"not-a-zip.zip":   {[]byte("PK but not really"), "not a zip archive"},
		"empty.zip":       {nil, "not a zip archive"},
		"no-manifest.zip": {zipOf(t, "install.sh", "echo hi"), "manifest.json: missing"},
		"no-version.zip":  {zipOf(t, "manifest.json", `{"name": "x", "command": "true"}`), "version: required"},
		"bad-version.zip": {zipOf(t, "manifest.json", `{"name": "x", "version": "latest", "command": "true"}`), "not a version"},
		"bad-json.zip":    {zipOf(t, "manifest.json", `{"name": `), "not valid JSON"},
		"escape.zip": {zipOf(t, "manifest.json", `{"name": "x", "version": "2.0", "command": "true"}`, "../evil.sh", "rm -rf /"),
			`"../evil.sh"`},
	}
	for name, z := range zips {
		drop(t, e.dir, name, z.data)
	}
	if err := os.Mkdir(filepath.Join(e.dir, "folder.zip"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(e.dir, "good.zip"), filepath.Join(e.dir, "link.zip")); err != nil {
		t.Fatal(err)
	}
	e.start(t, time.Hour)
	c := e.wait(t, func(c fleet.Catalog) error {
		if len(c.Refused) != len(zips)+2 {
			return fmt.Errorf("refused %q", refused(c))
		}
		return nil
	})
	if files(c) != "good.zip=1.0.0" || c.Target != "1.0.0" {
		t.Errorf("releases %q target %q", files(c), c.Target)
	}
	for _, r := range c.Refused {
		want := "not a regular file"
		if z, ok := zips[r.File]; ok {
			want = z.reason
		}
		if !strings.Contains(r.Reason, want) {
			t.Errorf("%s refused for %q, want it to say %q", r.File, r.Reason, want)
		}
	}
	natstest.Eventually(t, 5*time.Second, func() error {
		if got := natstest.Counter(t, "thinfleet_catalog_refused_zips", nil); got != float64(len(c.Refused)) {
			return fmt.Errorf("refused gauge %v, want %d", got, len(c.Refused))
		}
		if got := natstest.Counter(t, "thinfleet_catalog_releases", nil); got != 1 {
			return fmt.Errorf("releases gauge %v, want 1", got)
		}
		return nil
	})
}

// TestQuiet checks that rescans of an unchanged folder write nothing, and
// that an unchanged zip is not read again.
func TestQuiet(t *testing.T) {
	e := setup(t)
	v1 := release(t, "1.0.0")
	drop(t, e.dir, "x.zip", v1)
	var puts atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.store.WatchCatalog(ctx, func(c store.Change[fleet.Catalog]) error {
		if !c.Loaded {
			puts.Add(1)
		}
		return nil
	})
	e.start(t, 20*time.Millisecond)
	first := e.wait(t, is("x.zip=1.0.0", "", "1.0.0"))
	natstest.Eventually(t, 5*time.Second, func() error {
		if puts.Load() == 0 {
			return fmt.Errorf("watch saw no catalog")
		}
		return nil
	})
	seen := puts.Load()

	// Rescans every 20ms, and a file event, for half a second.
	write(t, e.dir, "README.md", []byte("hello"))
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if n := puts.Load(); n != seen {
			t.Fatalf("catalog written %d times by rescans of an unchanged folder", n-seen)
		}
	}

	// The same size and time but other bytes: taken as unchanged, not
	// read again. (An operator's copy changes the time.)
	v2 := release(t, "1.0.1")
	if len(v2) != len(v1) {
		t.Fatalf("test zips differ in size: %d, %d", len(v1), len(v2))
	}
	info, err := os.Stat(filepath.Join(e.dir, "x.zip"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(e.dir, ".x.zip.tmp")
	write(t, e.dir, ".x.zip.tmp", v2)
	if err := os.Chtimes(tmp, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, "x.zip")); err != nil {
		t.Fatal(err)
	}
	drop(t, e.dir, "y.zip", release(t, "0.9.0"))
	c := e.wait(t, is("x.zip=1.0.0 y.zip=0.9.0", "", "1.0.0"))
	if c.Releases[0].SHA256 != first.Releases[0].SHA256 {
		t.Error("x.zip read again though its size and time did not change")
	}
	if n := puts.Load(); n != seen+1 {
		t.Errorf("one change written %d times", n-seen)
	}

	// A new time: read again.
	now := time.Now()
	if err := os.Chtimes(filepath.Join(e.dir, "x.zip"), now, now); err != nil {
		t.Fatal(err)
	}
	c = e.wait(t, is("x.zip=1.0.1 y.zip=0.9.0", "", "1.0.1"))
	if c.Releases[0].SHA256 != sum(v2) {
		t.Errorf("x.zip sha256 %s, want %s", c.Releases[0].SHA256, sum(v2))
	}
}

func TestNew(t *testing.T) {
	e := setup(t)
	if _, err := catalog.New(catalog.Options{Metrics: natstest.Metrics, Store: e.store}); err == nil {
		t.Error("New without Dir: no error")
	}
	if _, err := catalog.New(catalog.Options{Metrics: natstest.Metrics, Dir: e.dir}); err == nil {
		t.Error("New without Store: no error")
	}
}

// TestDuplicateKeepsLive adds a second zip of the live release's version,
// one that both sorts first by name and is older by time, so that nothing
// but the stored catalog says which one is live: the live one stays, the
// newcomer is refused, and a restart changes nothing.
func TestDuplicateKeepsLive(t *testing.T) {
	e := setup(t)
	live, dup := release(t, "3.0.0"), zipOf(t,
		"manifest.json", `{"name": "Another 3.0.0", "version": "3.0.0", "command": "sh install.sh"}`,
		"install.sh", "echo something else\n")
	drop(t, e.dir, "update-3.0.0.zip", live)
	stop := e.start(t, time.Hour)
	e.wait(t, is("update-3.0.0.zip=3.0.0", "", "3.0.0"))

	drop(t, e.dir, "dup-3.0.0.zip", dup)
	old := time.Now().Add(-24 * time.Hour)
	if err := os.Chtimes(filepath.Join(e.dir, "dup-3.0.0.zip"), old, old); err != nil {
		t.Fatal(err)
	}
	check := func(when, releases string) {
		t.Helper()
		c := e.wait(t, is(releases, "dup-3.0.0.zip", "3.0.0"))
		if r := c.Releases[0]; r.SHA256 != sum(live) || r.File != "update-3.0.0.zip" {
			t.Errorf("%s: release %s %s, want update-3.0.0.zip %s", when, r.File, r.SHA256, sum(live))
		}
		why := c.Refused[0].Reason
		for _, want := range []string{"3.0.0", "update-3.0.0.zip"} {
			if !strings.Contains(why, want) {
				t.Errorf("%s: dup-3.0.0.zip refused for %q, which does not name %s", when, why, want)
			}
		}
	}
	check("after adding the duplicate", "update-3.0.0.zip=3.0.0")
	stop()

	// A restart reads the folder afresh but the catalog from the store.
	// The zip added while stopped makes its first scan write a catalog,
	// so the one checked is the restarted service's.
	drop(t, e.dir, "other.zip", release(t, "1.0.0"))
	e.start(t, time.Hour)
	check("after a restart", "update-3.0.0.zip=3.0.0 other.zip=1.0.0")

	// Without the live one, the other may serve.
	remove(t, e.dir, "update-3.0.0.zip")
	c := e.wait(t, is("dup-3.0.0.zip=3.0.0 other.zip=1.0.0", "", "3.0.0"))
	if c.Releases[0].SHA256 != sum(dup) {
		t.Errorf("release sha256 %s, want dup's %s", c.Releases[0].SHA256, sum(dup))
	}
}

// TestDuplicateFirstScan starts on a folder that already holds two zips
// of one version, which the store does not know: the older one stays,
// whatever the names, and the choice survives a restart.
func TestDuplicateFirstScan(t *testing.T) {
	e := setup(t)
	a, b := release(t, "2.0.0"), release(t, "2.0")
	drop(t, e.dir, "a.zip", a)
	drop(t, e.dir, "b.zip", b)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(e.dir, "b.zip"), old, old); err != nil {
		t.Fatal(err)
	}
	stop := e.start(t, time.Hour)
	e.wait(t, is("b.zip=2.0", "a.zip", "2.0"))
	stop()
	// a.zip becomes the oldest; the live b.zip still stays.
	older := old.Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(e.dir, "a.zip"), older, older); err != nil {
		t.Fatal(err)
	}
	drop(t, e.dir, "c.zip", release(t, "1.0.0")) // so the restart's scan writes
	e.start(t, time.Hour)
	c := e.wait(t, is("b.zip=2.0 c.zip=1.0.0", "a.zip", "2.0"))
	if c.Releases[0].SHA256 != sum(b) {
		t.Errorf("release sha256 %s, want b.zip's", c.Releases[0].SHA256)
	}
}
