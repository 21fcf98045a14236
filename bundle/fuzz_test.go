package bundle

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/wire"
)

func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		validManifest,
		`{"name":"n","version":"1.10","command":"c","description":"d","channel":"beta","platforms":["linux/amd64"]}`,
		"\ufeff" + validManifest,
		`{"name":"n","version":"1.0","command":"c","unknown":[1,{"a":null}]}`,
		`{}`, `null`, `[]`, `"x"`, ``, `{"name":`, `{"version":1.2}`,
		`{"name":"n","version":"v1.0.0-rc.1+build.5","command":"\u0000"}`,
		`{"name":"n","version":"1.0","command":"c","platforms":["` + strings.Repeat("p", 65) + `"]}`,
		`{"name":"\xff\xfe","version":"01.02","command":"<&>"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("error %v does not wrap ErrRefused", err)
			}
			if !reflect.DeepEqual(m, Manifest{}) {
				t.Fatalf("got manifest %+v with error %v, want none", m, err)
			}
			return
		}
		if strings.TrimSpace(m.Name) == "" || len(m.Name) > maxName || strings.TrimSpace(m.Command) == "" ||
			len(m.Command) > wire.MaxCommandLength || len(m.Description) > maxDescription ||
			len(m.Channel) > maxChannel || len(m.Platforms) > maxPlatforms {
			t.Fatalf("accepted a manifest out of bounds: %+v", m)
		}
		if _, err := wire.ParseVersion(m.Version); err != nil {
			t.Fatalf("accepted version %q: %v", m.Version, err)
		}
		// What was accepted must survive a round trip: the catalog stores it.
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: got %+v, %v; want %+v", m2, err, m)
		}
	})
}

// FuzzExtract checks that no zip makes Extract panic or write outside its
// staging directory, that every failure is a refusal that leaves nothing
// behind, and that Inspect agrees with Extract.
func FuzzExtract(f *testing.F) {
	f.Add(buildZip(f, manifest))
	f.Add(buildZip(f, manifest, zipEntry{name: "install.sh", body: "#!/bin/sh\necho hi\n", mode: 0o755},
		zipEntry{name: "a/", mode: fs.ModeDir | 0o755}, zipEntry{name: "a/b/c.txt", body: "c", store: true}))
	for _, tt := range hostile(f) {
		if tt.data != nil {
			f.Add(tt.data)
		} else {
			f.Add(buildZip(f, tt.entries...))
		}
	}
	limits := Limits{MaxFiles: 64, MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, MaxRatio: 200}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		zipPath := filepath.Join(base, "update.zip")
		if err := os.WriteFile(zipPath, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(base, "p"), 0o755); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(base, "p", "staging")

		m, err := Extract(zipPath, dir, limits)
		_, ierr := Inspect(zipPath, limits)
		got := tree(t, base)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Extract: error %v does not wrap ErrRefused", err)
			}
			if want := "p/ update.zip"; joinTree(got) != want {
				t.Fatalf("after a refusal the test dir holds %q, want %q", got, want)
			}
			if ierr == nil || ierr.Error() != err.Error() {
				t.Fatalf("Inspect: got error %v, want %v as from Extract", ierr, err)
			}
			return
		}
		if ierr != nil {
			t.Fatalf("Inspect refused what Extract accepted: %v", ierr)
		}
		for _, name := range got {
			if name != "update.zip" && name != "p/" && !strings.HasPrefix(name, "p/staging/") {
				t.Fatalf("Extract wrote %q outside the staging dir", name)
			}
		}
		err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if mode := info.Mode(); !mode.IsDir() && !mode.IsRegular() || mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
				t.Errorf("Extract made %s with mode %v", path, mode)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, ManifestName)); err != nil || m.Name == "" {
			t.Fatalf("accepted, but manifest %+v, %v", m, err)
		}
	})
}
