package bundle

import (
	"archive/zip"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

var manifest = manifestEntry(validManifest)

// hostile lists packages that Extract and Inspect must refuse. In names
// and bodies, {parent} stands for the directory that holds the staging
// directory, so an escape would land where the test looks.
func hostile(tb testing.TB) []struct {
	name    string
	entries []zipEntry
	data    []byte // the whole file, instead of entries
	limits  Limits
	want    string
} {
	zeros := make([]byte, 1<<20)
	valid := buildZip(tb, manifest, zipEntry{name: "install.sh", body: "echo hi\n"})
	// A name ending in / cannot hold data even raw, so the mode says directory.
	dirWithData := &zip.FileHeader{Name: "d", Method: zip.Store, CompressedSize64: 4, UncompressedSize64: 4}
	dirWithData.SetMode(fs.ModeDir | 0o755)
	encrypted := rawEntry(tb, "secret.txt", []byte("hush"), func(h *zip.FileHeader) { h.Flags |= 0x1 })
	return []struct {
		name    string
		entries []zipEntry
		data    []byte
		limits  Limits
		want    string
	}{
		{name: "absolute path", entries: []zipEntry{manifest, {name: "{parent}/evil"}}, want: "absolute path"},
		{name: "dot dot", entries: []zipEntry{manifest, {name: "../evil"}}, want: `entry "../evil": path leaves the package`},
		{name: "nested dot dot", entries: []zipEntry{manifest, {name: "a/../../evil"}}, want: "path leaves the package"},
		{name: "dot dot staying inside", entries: []zipEntry{manifest, {name: "a/../b"}}, want: "contains a .. element"},
		{name: "backslash dot dot", entries: []zipEntry{manifest, {name: `..\evil`}}, want: "backslash"},
		{name: "backslash", entries: []zipEntry{manifest, {name: `a\b.txt`}}, want: "backslash"},
		{name: "drive letter", entries: []zipEntry{manifest, {name: "C:/evil"}}, want: "drive letter"},
		{name: "drive relative", entries: []zipEntry{manifest, {name: "c:evil"}}, want: "drive letter"},
		{name: "NUL", entries: []zipEntry{manifest, {name: "a\x00b"}}, want: "NUL"},
		{name: "control character", entries: []zipEntry{manifest, {name: "a\nb"}}, want: `entry "a\nb": name contains a control character`},
		{name: "empty element", entries: []zipEntry{manifest, {name: "a//b"}}, want: "not a clean path"},
		{name: "dot element", entries: []zipEntry{manifest, {name: "./a"}}, want: "not a clean path"},
		{name: "empty name", entries: []zipEntry{manifest, {name: ""}}, want: "empty name"},
		{name: "invalid UTF-8", entries: []zipEntry{manifest, {name: "a\xffb"}}, want: "not valid UTF-8"},
		{name: "long name", entries: []zipEntry{manifest, {name: strings.Repeat("a/", 600) + "x"}}, want: "longer than 1024 bytes"},
		{name: "long element", entries: []zipEntry{manifest, {name: strings.Repeat("a", 256)}}, want: "longer than 255 bytes"},
		{name: "symlink out", entries: []zipEntry{manifest, {name: "link", body: "{parent}", mode: fs.ModeSymlink | 0o777}, {name: "link/evil"}}, want: `entry "link": is a symbolic link`},
		{name: "symlink up", entries: []zipEntry{manifest, {name: "up", body: "..", mode: fs.ModeSymlink | 0o777}}, want: "symbolic link"},
		{name: "named pipe", entries: []zipEntry{manifest, {name: "fifo", mode: fs.ModeNamedPipe | 0o644}}, want: "is a named pipe"},
		{name: "block device", entries: []zipEntry{manifest, {name: "sda", mode: fs.ModeDevice | 0o644}}, want: "is a device"},
		{name: "char device", entries: []zipEntry{manifest, {name: "tty", mode: fs.ModeDevice | fs.ModeCharDevice | 0o644}}, want: "is a device"},
		{name: "socket", entries: []zipEntry{manifest, {name: "sock", mode: fs.ModeSocket | 0o644}}, want: "is a socket"},
		{name: "duplicate file", entries: []zipEntry{manifest, {name: "a.txt"}, {name: "a.txt"}}, want: `entry "a.txt": appears twice`},
		{name: "duplicate manifest", entries: []zipEntry{manifest, manifestEntry(`{"name":"x","version":"9.0","command":"rm -rf /"}`)}, want: "appears twice"},
		{name: "duplicate dir", entries: []zipEntry{manifest, {name: "d/", mode: fs.ModeDir | 0o755}, {name: "d/", mode: fs.ModeDir | 0o755}}, want: "appears twice"},
		{name: "case collision", entries: []zipEntry{manifest, {name: "README"}, {name: "readme"}}, want: `entry "readme": collides with "README"`},
		{name: "case collision of dirs", entries: []zipEntry{manifest, {name: "Lib/a"}, {name: "lib/b"}}, want: "differ only in case"},
		{name: "case collision with manifest", entries: []zipEntry{manifest, {name: "MANIFEST.JSON"}}, want: "differ only in case"},
		{name: "file then dir", entries: []zipEntry{manifest, {name: "a"}, {name: "a/b"}}, want: `entry "a": is both a file and a directory`},
		{name: "dir then file", entries: []zipEntry{manifest, {name: "a/b"}, {name: "a"}}, want: "is both a file and a directory"},
		{name: "directory with data", entries: []zipEntry{manifest, {raw: dirWithData, body: "data"}}, want: "is a directory but holds data"},
		{name: "too many entries", entries: []zipEntry{manifest, {name: "a"}, {name: "b"}, {name: "c"}}, limits: Limits{MaxFiles: 3}, want: "package has 4 entries, the limit is 3"},
		{name: "declared file size", entries: []zipEntry{manifest, rawEntry(tb, "big", []byte("x"), func(h *zip.FileHeader) { h.UncompressedSize64 = 2 << 30 })}, want: `entry "big": expands to 2.0 GiB, the limit is 1.0 GiB per file`},
		{name: "declared total size", entries: []zipEntry{manifest, {name: "a", body: strings.Repeat("a", 600)}, {name: "b", body: strings.Repeat("b", 600)}}, limits: Limits{MaxTotalSize: 1000}, want: "package expands to at least 1.2 KiB, the limit is 1000 B"},
		{name: "ratio", entries: []zipEntry{manifest, {name: "zeros", body: string(zeros) + string(zeros)}}, want: `entry "zeros": expands 2.0 MiB from`},
		{name: "size lies low", entries: []zipEntry{manifest, rawEntry(tb, "liar", zeros, func(h *zip.FileHeader) { h.UncompressedSize64 = 100 })}, want: `entry "liar": data does not match its header`},
		{name: "size lies zero", entries: []zipEntry{manifest, rawEntry(tb, "liar", zeros, func(h *zip.FileHeader) { h.UncompressedSize64 = 0 })}, want: "does not match its header"},
		{name: "size lies high", entries: []zipEntry{manifest, rawEntry(tb, "liar", []byte("short"), func(h *zip.FileHeader) { h.UncompressedSize64 = 50 })}, want: "truncated"},
		{name: "compressed size lies", entries: []zipEntry{manifest, rawEntry(tb, "liar", zeros, func(h *zip.FileHeader) { h.CompressedSize64 /= 2 })}, want: `entry "liar":`},
		{name: "bad CRC", entries: []zipEntry{manifest, rawEntry(tb, "a.txt", []byte("hello"), func(h *zip.FileHeader) { h.CRC32++ })}, want: "checksum mismatch"},
		{name: "corrupt deflate", entries: []zipEntry{manifest, {raw: &zip.FileHeader{Name: "junk", Method: zip.Deflate, CompressedSize64: 8, UncompressedSize64: 8}, body: "\xff\xff\xff\xff\xff\xff\xff\xff"}}, want: "compressed data is corrupt"},
		{name: "encrypted", entries: []zipEntry{manifest, encrypted}, want: "is encrypted"},
		{name: "unknown method", entries: []zipEntry{manifest, {raw: &zip.FileHeader{Name: "x", Method: 99, CompressedSize64: 1, UncompressedSize64: 1}, body: "x"}}, want: "compression method 99"},
		{name: "not a zip", data: []byte("hello, world"), want: "not a zip archive"},
		{name: "empty file", data: []byte{}, want: "not a zip archive"},
		{name: "truncated zip", data: valid[:len(valid)/2], want: "not a zip archive"},
		{name: "no entries", entries: []zipEntry{}, want: "manifest.json: missing"},
		{name: "missing manifest", entries: []zipEntry{{name: "install.sh"}}, want: "manifest.json: missing"},
		{name: "manifest in a folder", entries: []zipEntry{{name: "sub/manifest.json", body: validManifest}}, want: "manifest.json: missing"},
		{name: "manifest is a directory", entries: []zipEntry{{name: "manifest.json/", mode: fs.ModeDir | 0o755}}, want: "manifest.json: missing"},
		{name: "manifest is a symlink", entries: []zipEntry{{name: "manifest.json", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}}, want: "symbolic link"},
		{name: "manifest not JSON", entries: []zipEntry{manifestEntry("name: x")}, want: "manifest.json: not valid JSON"},
		{name: "manifest without version", entries: []zipEntry{manifestEntry(`{"name":"x","command":"true"}`)}, want: "manifest.json: version: required"},
		{name: "manifest too big", entries: []zipEntry{manifestEntry(validManifest + strings.Repeat(" ", 64<<10))}, want: "manifest.json: larger than 64.0 KiB"},
		{name: "manifest size lies", entries: []zipEntry{rawEntry(tb, ManifestName, []byte(validManifest), func(h *zip.FileHeader) { h.UncompressedSize64 = 10 })}, want: `entry "manifest.json": data does not match its header`},
	}
}

func TestRefused(t *testing.T) {
	for _, tt := range hostile(t) {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			data := tt.data
			if data == nil {
				entries := make([]zipEntry, len(tt.entries))
				for i, e := range tt.entries {
					e.name = strings.ReplaceAll(e.name, "{parent}", parent)
					e.body = strings.ReplaceAll(e.body, "{parent}", parent)
					entries[i] = e
				}
				data = buildZip(t, entries...)
			}
			zipPath := writeFile(t, "update.zip", data)
			dir := filepath.Join(parent, "staging")

			_, err := Extract(zipPath, dir, tt.limits)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Extract: got error %v, want one wrapping ErrRefused", err)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Extract: got error %q, want it to contain %q", err, tt.want)
			}
			if got := tree(t, parent); len(got) != 0 {
				t.Errorf("after Extract, parent holds %q, want nothing (staging removed, nothing escaped)", got)
			}

			_, ierr := Inspect(zipPath, tt.limits)
			if !errors.Is(ierr, ErrRefused) || ierr.Error() != err.Error() {
				t.Errorf("Inspect: got error %v, want the same refusal as Extract", ierr)
			}
		})
	}
}

// TestRefusedBomb checks that 50 MB of zeros, compressed over 1000:1, is
// refused from its header alone: before the staging directory exists.
func TestRefusedBomb(t *testing.T) {
	zeros := make([]byte, 50<<20)
	for _, tt := range []struct {
		name  string
		entry zipEntry
		want  string
	}{
		{"honest header", rawEntry(t, "bomb", zeros, nil), `entry "bomb": expands 50.0 MiB from`},
		{"header claims 1 KiB", rawEntry(t, "bomb", zeros, func(h *zip.FileHeader) { h.UncompressedSize64 = 1 << 10 }), "does not match its header"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			zipPath := writeFile(t, "bomb.zip", buildZip(t, manifest, tt.entry))
			parent := t.TempDir()
			_, err := Extract(zipPath, filepath.Join(parent, "staging"), DefaultLimits)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Extract: got error %v, want a refusal containing %q", err, tt.want)
			}
			if got := tree(t, parent); len(got) != 0 {
				t.Errorf("after Extract, parent holds %q, want nothing", got)
			}
		})
	}
}
