package bundle

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// zipEntry is one entry for buildZip.
type zipEntry struct {
	name  string
	body  string
	mode  fs.FileMode // zero: a regular 0o644 file
	store bool        // store instead of deflate
	// raw, if set, is written as is with CreateRaw (so its sizes, CRC and
	// flags may lie) and body is the already compressed data.
	raw *zip.FileHeader
}

// validManifest is the manifest of most test packages.
const validManifest = `{"name": "Update 1", "version": "1.2.0", "command": "sh install.sh"}`

func manifestEntry(body string) zipEntry { return zipEntry{name: ManifestName, body: body} }

// buildZip returns a zip holding entries, in order.
func buildZip(tb testing.TB, entries ...zipEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := e.raw
		if h == nil {
			h = &zip.FileHeader{Name: e.name, Method: zip.Deflate}
			if e.store {
				h.Method = zip.Store
			}
			mode := e.mode
			if mode == 0 {
				mode = 0o644
			}
			h.SetMode(mode)
		}
		create := zw.CreateHeader
		if e.raw != nil {
			create = zw.CreateRaw
		}
		w, err := create(h)
		if err != nil {
			tb.Fatalf("zip entry %q: %v", h.Name, err)
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			tb.Fatalf("zip entry %q: write: %v", h.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		tb.Fatalf("close zip: %v", err)
	}
	return buf.Bytes()
}

// rawEntry deflates data and returns a raw entry whose header is honest
// until lie changes it.
func rawEntry(tb testing.TB, name string, data []byte, lie func(*zip.FileHeader)) zipEntry {
	tb.Helper()
	comp := deflate(tb, data)
	h := &zip.FileHeader{
		Name:               name,
		Method:             zip.Deflate,
		CRC32:              crc32.ChecksumIEEE(data),
		CompressedSize64:   uint64(len(comp)),
		UncompressedSize64: uint64(len(data)),
	}
	if lie != nil {
		lie(h)
	}
	return zipEntry{raw: h, body: string(comp)}
}

func deflate(tb testing.TB, data []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.BestSpeed)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := fw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := fw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// writeFile writes data to a new file in a fresh temp dir and returns its path.
func writeFile(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// tree lists everything under dir, slash-separated, directories with a
// trailing slash, executable files with a trailing *.
func tree(tb testing.TB, dir string) []string {
	tb.Helper()
	var got []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			rel += "/"
		case !info.Mode().IsRegular():
			rel += " (" + info.Mode().Type().String() + ")"
		case info.Mode()&0o111 != 0:
			rel += "*"
		}
		if info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			rel += " (" + info.Mode().String() + ")"
		}
		got = append(got, rel)
		return nil
	})
	if err != nil {
		tb.Fatalf("walk %s: %v", dir, err)
	}
	return got
}

func joinTree(names []string) string { return strings.Join(names, " ") }
