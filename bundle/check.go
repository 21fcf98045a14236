package bundle

import (
	"archive/zip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// archive is an open zip whose headers have passed every check.
type archive struct {
	file     *os.File
	entries  []entry
	manifest *zip.File
	limits   Limits
}

// entry is one checked zip entry.
type entry struct {
	zf   *zip.File
	name string // clean, slash-separated, without a trailing slash
	dir  bool
	perm fs.FileMode // 0o755 or 0o644 for a file
}

// openArchive opens the zip at path and checks its headers: names, kinds,
// declared sizes and ratios, and the number of entries. It reads no data.
func openArchive(path string, limits Limits) (*archive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, refuse("%s: not a regular file", path)
	}
	zr, err := zip.NewReader(zipFile{f, info.Size()}, info.Size())
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		f.Close()
		if isIOError(err) {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if err == zip.ErrFormat {
			return nil, refuse("not a zip archive")
		}
		return nil, refuse("not a zip archive (%v)", err)
	}
	a := &archive{file: f, limits: limits.withDefaults()}
	if err := a.check(zr.File); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

func (a *archive) Close() error { return a.file.Close() }

// check fills a.entries from files, refusing the first bad header.
func (a *archive) check(files []*zip.File) error {
	l := a.limits
	if len(files) > l.MaxFiles {
		return refuse("package has %d entries, the limit is %d", len(files), l.MaxFiles)
	}
	seen := make(map[string]seenName, len(files))
	var total uint64
	for _, zf := range files {
		e, err := checkEntry(zf, l)
		if err != nil {
			return err
		}
		if err := claim(seen, e.name, e.dir, true); err != nil {
			return err
		}
		for i := strings.LastIndexByte(e.name, '/'); i > 0; i = strings.LastIndexByte(e.name[:i], '/') {
			if err := claim(seen, e.name[:i], true, false); err != nil {
				return err
			}
		}
		total += zf.UncompressedSize64
		if total > uint64(l.MaxTotalSize) {
			return refuse("package expands to at least %s, the limit is %s",
				formatSize(total), formatSize(uint64(l.MaxTotalSize)))
		}
		if e.name == ManifestName && !e.dir {
			a.manifest = zf
		}
		a.entries = append(a.entries, e)
	}
	if a.manifest == nil {
		return refuse("%s: missing at the root of the zip", ManifestName)
	}
	return nil
}

// checkEntry checks one header on its own: name, kind, flags, sizes.
func checkEntry(zf *zip.File, l Limits) (entry, error) {
	name, err := cleanName(zf.Name)
	if err != nil {
		return entry{}, err
	}
	mode := zf.Mode()
	e := entry{zf: zf, name: name, dir: mode.IsDir(), perm: 0o644}
	switch {
	case mode&fs.ModeSymlink != 0:
		return e, refuseEntry(zf.Name, "is a symbolic link; links are not allowed")
	case mode.Type()&^fs.ModeDir != 0:
		return e, refuseEntry(zf.Name, "is a %s, not a regular file or directory", kind(mode))
	case zf.Flags&0x1 != 0:
		return e, refuseEntry(zf.Name, "is encrypted")
	case zf.Method != zip.Store && zf.Method != zip.Deflate:
		return e, refuseEntry(zf.Name, "uses compression method %d; only store and deflate are supported", zf.Method)
	case e.dir && zf.UncompressedSize64 != 0:
		return e, refuseEntry(zf.Name, "is a directory but holds data")
	case zf.UncompressedSize64 > uint64(l.MaxFileSize):
		return e, refuseEntry(zf.Name, "expands to %s, the limit is %s per file",
			formatSize(zf.UncompressedSize64), formatSize(uint64(l.MaxFileSize)))
	case overRatio(zf.UncompressedSize64, zf.CompressedSize64, l.MaxRatio):
		return e, refuseEntry(zf.Name, "expands %s from %s, more than %d times (a zip bomb?)",
			formatSize(zf.UncompressedSize64), formatSize(zf.CompressedSize64), l.MaxRatio)
	}
	if mode&0o111 != 0 {
		e.perm = 0o755
	}
	return e, nil
}

// overRatio reports whether an entry of compressed size c expanding to u
// bytes breaks the ratio limit r. It cannot overflow: u > c*r exactly when
// the ceiling of u/r exceeds c.
func overRatio(u, c uint64, r int64) bool {
	if u <= ratioFloor {
		return false
	}
	q := u / uint64(r)
	if u%uint64(r) != 0 {
		q++
	}
	return q > c
}

func kind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeNamedPipe != 0:
		return "named pipe"
	case mode&fs.ModeSocket != 0:
		return "socket"
	case mode&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

// seenName is a name the package already uses, directly or as the parent
// directory of another entry.
type seenName struct {
	name     string
	dir      bool
	explicit bool
}

// claim records name in seen, keyed case-insensitively, so that no two
// entries may land on one path, not even on a case-insensitive disk.
func claim(seen map[string]seenName, name string, dir, explicit bool) error {
	key := strings.ToLower(name)
	old, ok := seen[key]
	switch {
	case !ok:
	case old.name != name:
		return refuseEntry(name, "collides with %s: the names differ only in case", quote(old.name))
	case old.dir != dir:
		return refuseEntry(name, "is both a file and a directory")
	case explicit && old.explicit:
		return refuseEntry(name, "appears twice in the zip")
	case !explicit:
		return nil // a parent directory already known
	}
	seen[key] = seenName{name: name, dir: dir, explicit: explicit || old.explicit}
	return nil
}
