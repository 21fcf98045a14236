package bundle

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestExtract(t *testing.T) {
	want := Manifest{Name: "Update 1", Version: "1.2.0", Command: "sh install.sh"}
	tests := []struct {
		name     string
		entries  []zipEntry
		want     Manifest
		wantTree string // see tree: dirs end in /, executables in *
	}{
		{
			name:     "manifest only",
			entries:  []zipEntry{manifest},
			wantTree: "manifest.json",
		},
		{
			name: "executable bit kept",
			entries: []zipEntry{manifest,
				{name: "install.sh", body: "#!/bin/sh\n", mode: 0o755},
				{name: "owner-only.sh", body: "#!/bin/sh\n", mode: 0o700},
				{name: "data.txt", body: "data", mode: 0o644},
				{name: "readonly.txt", body: "data", mode: 0o400}},
			wantTree: "data.txt install.sh* manifest.json owner-only.sh* readonly.txt",
		},
		{
			name: "setuid, setgid and sticky dropped",
			entries: []zipEntry{manifest,
				{name: "suid", mode: fs.ModeSetuid | fs.ModeSetgid | 0o755},
				{name: "sticky", mode: fs.ModeSticky | 0o644}},
			wantTree: "manifest.json sticky suid*",
		},
		{
			name:     "nested implied dirs",
			entries:  []zipEntry{{name: "a/b/c/file.txt", body: "deep"}, manifest, {name: "a/top.txt"}},
			wantTree: "a/ a/b/ a/b/c/ a/b/c/file.txt a/top.txt manifest.json",
		},
		{
			name: "explicit dirs, before and after their files",
			entries: []zipEntry{manifest,
				{name: "a/", mode: fs.ModeDir | 0o755},
				{name: "a/b/", mode: fs.ModeDir | 0o755},
				{name: "a/b/f.txt"},
				{name: "z/f.txt"},
				{name: "z/", mode: fs.ModeDir | 0o755},
				{name: "empty/", mode: fs.ModeDir | 0o755}},
			wantTree: "a/ a/b/ a/b/f.txt empty/ manifest.json z/ z/f.txt",
		},
		{
			name:     "read-only dir still filled",
			entries:  []zipEntry{manifest, {name: "ro/", mode: fs.ModeDir | 0o555}, {name: "ro/f"}},
			wantTree: "manifest.json ro/ ro/f",
		},
		{
			name:     "stored and empty files",
			entries:  []zipEntry{{name: ManifestName, body: validManifest, store: true}, {name: "empty"}, {name: "s.txt", body: "stored", store: true}},
			wantTree: "empty manifest.json s.txt",
		},
		{
			name:     "compressible file under the ratio floor",
			entries:  []zipEntry{manifest, {name: "zeros", body: string(make([]byte, 512<<10))}},
			wantTree: "manifest.json zeros",
		},
		{
			name:     "unicode names",
			entries:  []zipEntry{manifest, {name: "ünï/файл.txt"}},
			wantTree: "manifest.json ünï/ ünï/файл.txt",
		},
		{
			name: "optional fields and byte order mark",
			entries: []zipEntry{manifestEntry("\ufeff" + `{"name":"n","version":"1.10","command":"./go",
				"description":"d","channel":"beta","platforms":["linux/amd64"],"extra":{"x":1}}`)},
			want:     Manifest{Name: "n", Version: "1.10", Command: "./go", Description: "d", Channel: "beta", Platforms: []string{"linux/amd64"}},
			wantTree: "manifest.json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want.Name == "" {
				tt.want = want
			}
			zipPath := writeFile(t, "update.zip", buildZip(t, tt.entries...))
			dir := filepath.Join(t.TempDir(), "staging")

			got, err := Extract(zipPath, dir, DefaultLimits)
			if err != nil {
				t.Fatalf("Extract: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Extract manifest: got %+v, want %+v", got, tt.want)
			}
			if got := joinTree(tree(t, dir)); got != tt.wantTree {
				t.Errorf("extracted tree:\n got %s\nwant %s", got, tt.wantTree)
			}
			for _, e := range tt.entries {
				if e.mode.IsDir() || e.name == "" {
					continue
				}
				data, err := os.ReadFile(filepath.Join(dir, e.name))
				if err != nil || string(data) != e.body {
					t.Errorf("%s: got %d bytes, error %v; want the %d bytes zipped", e.name, len(data), err, len(e.body))
				}
			}
			if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o755&^umask(t) {
				t.Errorf("staging dir: got %v, %v; want mode %v", info.Mode(), err, fs.FileMode(0o755&^umask(t)))
			}

			inspected, err := Inspect(zipPath, DefaultLimits)
			if err != nil || !reflect.DeepEqual(inspected, tt.want) {
				t.Errorf("Inspect: got %+v, %v; want %+v", inspected, err, tt.want)
			}
		})
	}
}

// umask returns the process's umask, without changing it, from a directory
// created with mode 0o777.
func umask(t *testing.T) fs.FileMode {
	t.Helper()
	path := filepath.Join(t.TempDir(), "probe")
	if err := os.Mkdir(path, 0o777); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ info.Mode().Perm()
}

func TestExtractErrors(t *testing.T) {
	valid := writeFile(t, "update.zip", buildZip(t, manifest))
	t.Run("staging dir exists", func(t *testing.T) {
		dir := t.TempDir()
		keep := filepath.Join(dir, "keep")
		if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Extract(valid, dir, DefaultLimits)
		if !errors.Is(err, fs.ErrExist) || errors.Is(err, ErrRefused) {
			t.Errorf("got error %v, want fs.ErrExist and no refusal", err)
		}
		if got := joinTree(tree(t, dir)); got != "keep" {
			t.Errorf("existing dir now holds %q, want it untouched", got)
		}
	})
	t.Run("parent missing", func(t *testing.T) {
		_, err := Extract(valid, filepath.Join(t.TempDir(), "no", "staging"), DefaultLimits)
		if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrRefused) {
			t.Errorf("got error %v, want fs.ErrNotExist and no refusal", err)
		}
	})
	t.Run("zip missing", func(t *testing.T) {
		parent := t.TempDir()
		_, err := Extract(filepath.Join(parent, "none.zip"), filepath.Join(parent, "staging"), DefaultLimits)
		if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrRefused) {
			t.Errorf("got error %v, want fs.ErrNotExist and no refusal", err)
		}
		if _, err := Inspect(filepath.Join(parent, "none.zip"), DefaultLimits); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Inspect: got error %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("zip is a directory", func(t *testing.T) {
		_, err := Inspect(t.TempDir(), DefaultLimits)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("got error %v, want a refusal: not a regular file", err)
		}
	})
}

func TestFileSHA256(t *testing.T) {
	for _, tt := range []struct {
		data string
		want string
	}{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	} {
		sum, size, err := FileSHA256(writeFile(t, "f", []byte(tt.data)))
		if sum != tt.want || size != int64(len(tt.data)) || err != nil {
			t.Errorf("FileSHA256(%q): got %s, %d, %v; want %s, %d, nil", tt.data, sum, size, err, tt.want, len(tt.data))
		}
	}
	if _, _, err := FileSHA256(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FileSHA256 of a missing file: got error %v, want fs.ErrNotExist", err)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 2 << 30: "2.0 GiB", 1<<64 - 1: "16.0 EiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d): got %q, want %q", n, got, want)
		}
	}
}
