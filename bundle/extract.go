package bundle

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Inspect opens the zip at path and checks it as [Extract] would, without
// writing anything: every header (names, kinds, declared sizes, number of
// entries, ratios), then every entry's data, decompressed and discarded, so
// that corrupt data and sizes that lie are found too. It returns the parsed
// manifest. A refusal wraps [ErrRefused]; its text says what is wrong, for
// an operator.
func Inspect(path string, limits Limits) (Manifest, error) {
	a, err := openArchive(path, limits)
	if err != nil {
		return Manifest{}, err
	}
	defer a.Close()
	m, err := a.readManifest()
	if err != nil {
		return Manifest{}, err
	}
	var used int64
	for _, e := range a.entries {
		if !e.dir {
			if err := a.copyEntry(io.Discard, e, &used); err != nil {
				return Manifest{}, err
			}
		}
	}
	return m, nil
}

// Extract unpacks the zip at zipPath into dir, which must not exist yet;
// its parent must. It checks every header and the manifest before it
// creates dir (mode 0o755), writes only through an [os.Root] on dir, and
// counts the bytes it decompresses against limits. On any error it removes
// dir again, so no half-extracted tree remains. Files are 0o755 if the zip
// marks them executable, 0o644 otherwise (less the umask), directories
// 0o755. It returns the manifest; a refusal wraps [ErrRefused].
func Extract(zipPath, dir string, limits Limits) (m Manifest, err error) {
	a, err := openArchive(zipPath, limits)
	if err != nil {
		return Manifest{}, err
	}
	defer a.Close()
	if m, err = a.readManifest(); err != nil {
		return Manifest{}, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return Manifest{}, err
	}
	defer func() {
		if err != nil {
			if rmErr := os.RemoveAll(dir); rmErr != nil {
				err = errors.Join(err, fmt.Errorf("remove half-extracted %s: %w", dir, rmErr))
			}
		}
	}()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Manifest{}, err
	}
	defer root.Close()
	var used int64
	for _, e := range a.entries {
		if err := a.extractEntry(root, e, &used); err != nil {
			return Manifest{}, err
		}
	}
	return m, nil
}

func (a *archive) extractEntry(root *os.Root, e entry, used *int64) error {
	name := filepath.FromSlash(e.name)
	if e.dir {
		return root.MkdirAll(name, 0o755)
	}
	if parent := filepath.Dir(name); parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	// O_EXCL: the checks guarantee each name is new, so an existing file
	// here means something is wrong; never write through it.
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.perm)
	if err != nil {
		return err
	}
	err = a.copyEntry(f, e, used)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (a *archive) readManifest() (Manifest, error) {
	if a.manifest.UncompressedSize64 > maxManifestSize {
		return Manifest{}, refuse("%s: larger than %s", ManifestName, formatSize(maxManifestSize))
	}
	rc, err := a.manifest.Open()
	if err != nil {
		return Manifest{}, readError(ManifestName, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err != nil {
		return Manifest{}, readError(ManifestName, err)
	}
	return ParseManifest(data)
}
