package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// inspected is what one zip turned out to be. It is cached by file name
// with the size and modification time it had, so a zip that did not change
// is not read (and hashed) again.
type inspected struct {
	size    int64
	mtime   time.Time
	sig     sigFile       // the signature file as it was read
	release fleet.Release // Added left zero
	refused string        // why, when the zip is not a valid release
}

// scan reads the folder and writes the catalog if its content changed.
func (s *Service) scan(ctx context.Context) {
	if s.published == nil {
		c, err := s.store.Catalog(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("read catalog, will retry", "err", err)
			}
			return
		}
		s.published = &c
	}
	now := time.Now().UTC()
	next, err := s.build(*s.published, now)
	if err != nil {
		// A folder that cannot be read right now is no reason to empty
		// the catalog: keep it as it is.
		s.log.Error("scan updates folder", "dir", s.dir, "err", err)
		return
	}
	s.metrics.Catalog(len(next.Releases), len(next.Refused))
	if sameContent(*s.published, next) {
		return
	}
	if next.TargetReason != s.published.TargetReason && strings.Contains(next.TargetReason, " refused: ") {
		s.log.Warn("policy file refused", "file", PolicyFile, "reason", next.TargetReason)
	}
	next.Updated = now
	if err := s.store.PutCatalog(ctx, next); err != nil {
		if ctx.Err() == nil {
			s.log.Error("write catalog, will retry", "err", err)
		}
		return
	}
	s.published = &next
	s.log.Info("catalog updated", "releases", len(next.Releases), "refused", len(next.Refused),
		"target", next.Target, "reason", next.TargetReason)
}

// build makes the catalog the folder holds now; prev supplies the times
// releases and refusals were first seen.
func (s *Service) build(prev fleet.Catalog, now time.Time) (fleet.Catalog, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fleet.Catalog{}, err
	}
	c := fleet.Catalog{Releases: []fleet.Release{}, Refused: []fleet.Refused{}}
	present := map[string]bool{}
	var zips []zipFile // in name order, as ReadDir sorts
	for _, e := range entries {
		name := e.Name()
		if !isCandidate(name) {
			continue
		}
		present[name] = true
		if in, ok := s.inspect(name); ok {
			zips = append(zips, zipFile{name: name, in: in})
		}
	}
	dedupe(prev, zips)
	for _, z := range zips {
		if z.in.refused != "" {
			since := refusedSince(prev, z.name, z.in.refused, now)
			if z.duplicate && since.Equal(now) {
				s.refused(z.name, z.in) // inspect logged the other refusals
			}
			c.Refused = append(c.Refused, fleet.Refused{File: z.name, Reason: z.in.refused, Time: since})
			continue
		}
		r := z.in.release
		r.Added = addedSince(prev, r, now)
		c.Releases = append(c.Releases, r)
	}
	for name := range s.cache {
		if !present[name] {
			delete(s.cache, name)
		}
	}
	slices.SortStableFunc(c.Releases, func(a, b fleet.Release) int {
		n, _ := wire.CompareVersions(b.Version, a.Version)
		return n
	})
	c.Target, c.TargetReason = s.target(c.Releases, prev)
	return c, nil
}

// zipFile is one zip of a scan, by file name.
type zipFile struct {
	name      string
	in        inspected
	duplicate bool // refused by dedupe, not by inspect
}

// dedupe refuses all but one valid zip of each version. The one that
// stays is the one the stored catalog already offers for that version, so
// adding a zip never replaces the live release and a restart, which reads
// the stored catalog, changes nothing. Among zips the catalog does not
// offer yet (a first scan, or the live one removed), the oldest by
// modification time stays, then the first by name. The refusals are not
// cached: they last only while the other zip is there.
func dedupe(prev fleet.Catalog, zips []zipFile) {
	for i := range zips {
		a := &zips[i]
		if a.in.refused != "" {
			continue
		}
		for j := range zips {
			b := zips[j]
			if i == j || b.in.refused != "" && !b.duplicate {
				continue
			}
			if same, err := wire.CompareVersions(a.in.release.Version, b.in.release.Version); err != nil || same != 0 {
				continue
			}
			if stays(prev, b, *a) {
				a.in.refused = fmt.Sprintf("version %s is already provided by %s, which stays the release; remove %s or give it another version",
					a.in.release.Version, b.name, a.name)
				a.duplicate = true
				break
			}
		}
	}
}

// stays reports whether a, rather than b (two zips of one version), is
// the one to keep.
func stays(prev fleet.Catalog, a, b zipFile) bool {
	if pa, pb := live(prev, a), live(prev, b); pa != pb {
		return pa > pb
	}
	if !a.in.mtime.Equal(b.in.mtime) {
		return a.in.mtime.Before(b.in.mtime)
	}
	return a.name < b.name
}

// live ranks how surely z is the release the stored catalog offers: 2 for
// its file with the same bytes, 1 for its file with other bytes (replaced
// in place), 0 for a zip the catalog does not offer.
func live(prev fleet.Catalog, z zipFile) int {
	for _, p := range prev.Releases {
		if p.File != z.name {
			continue
		}
		if same, err := wire.CompareVersions(p.Version, z.in.release.Version); err != nil || same != 0 {
			continue
		}
		if p.SHA256 == z.in.release.SHA256 {
			return 2
		}
		return 1
	}
	return 0
}

// isCandidate reports whether a file name is one the catalog reads: a
// *.zip that is not hidden and not an editor's or a copy's temporary file.
// Everything else in the folder (README.md, signatures, the policy file,
// a zip.part being copied) is no release and no refusal.
func isCandidate(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "~") || strings.HasPrefix(name, "#") {
		return false
	}
	return strings.EqualFold(filepath.Ext(name), ".zip") && len(name) > len(".zip")
}

// inspect returns what the zip name is, from the cache when its size and
// time and its signature file did not change. It reports false for a zip
// to leave out of this scan: gone since the folder was listed, or
// changing while read.
func (s *Service) inspect(name string) (inspected, bool) {
	path := filepath.Join(s.dir, name)
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return inspected{}, false
	}
	if err != nil {
		return inspected{refused: "cannot read: " + err.Error()}, true
	}
	sig, err := readSigFile(path)
	if err != nil {
		return inspected{refused: "cannot read: " + err.Error()}, true
	}
	if c, ok := s.cache[name]; ok && c.size == info.Size() && c.mtime.Equal(info.ModTime()) && c.sig == sig {
		return c, true
	}
	in := inspected{size: info.Size(), mtime: info.ModTime(), sig: sig}
	if !info.Mode().IsRegular() {
		in.refused = "not a regular file (a link or a folder): put the zip itself in the folder"
		s.refused(name, in)
		return in, true
	}
	signature, state, why := s.signature(name, sig)
	if why != "" {
		in.refused = why
		s.refused(name, in)
		s.cache[name] = in
		return in, true
	}
	// The signature first: with a publisher key, nothing unsigned is
	// even parsed.
	sum, size, err := s.digest(path, signature)
	var m bundle.Manifest
	if err == nil {
		m, err = bundle.Inspect(path, s.limits)
	}
	if err == nil && size != info.Size() {
		s.log.Debug("zip changed while read, later", "file", name)
		return inspected{}, false // the events of the change bring another scan
	}
	if err == nil {
		in.release = fleet.Release{
			Name: m.Name, Version: m.Version, SHA256: sum, Size: size, Command: m.Command, File: name,
			Description: m.Description, Channel: m.Channel, Platforms: m.Platforms,
			SignatureState: state,
		}
		if signature != nil {
			in.release.Signature = bundle.EncodeSignature(signature)
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return inspected{}, false
	case errors.Is(err, bundle.ErrRefused):
		in.refused = err.Error()
	case err != nil:
		// The disk, not the zip: not cached, so the next scan tries again.
		in.refused = "cannot read: " + err.Error()
		s.log.Error("zip unreadable", "file", name, "err", err)
		return in, true
	default:
		in.refused = offerable(in.release)
	}
	if in.refused != "" {
		s.refused(name, in)
	}
	s.cache[name] = in
	return in, true
}

func (s *Service) refused(name string, in inspected) {
	s.log.Warn("zip refused", "file", name, "reason", in.refused)
}

// offerable checks a release as decision will offer it, so that nothing in
// the catalog makes an offer an agent refuses; it returns why not, or "".
func offerable(r fleet.Release) string {
	o := wire.Offer{
		ID: "check", Name: r.Name, Version: r.Version, SHA256: r.SHA256, Size: r.Size,
		Command: r.Command, URL: "http://check/" + r.File, Signature: r.Signature,
	}
	if err := o.Validate(); err != nil {
		return "not offerable: " + strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	return ""
}

// addedSince keeps the time a release was first seen: same content, same
// version.
func addedSince(prev fleet.Catalog, r fleet.Release, now time.Time) time.Time {
	for _, p := range prev.Releases {
		if p.SHA256 == r.SHA256 && p.Version == r.Version && !p.Added.IsZero() {
			return p.Added
		}
	}
	return now
}

// refusedSince keeps the time a zip was first refused for a reason.
func refusedSince(prev fleet.Catalog, file, reason string, now time.Time) time.Time {
	for _, p := range prev.Refused {
		if p.File == file && p.Reason == reason && !p.Time.IsZero() {
			return p.Time
		}
	}
	return now
}

// sameContent reports whether two catalogs say the same, whenever they
// were written.
func sameContent(a, b fleet.Catalog) bool {
	norm := func(c fleet.Catalog) []byte {
		c.Updated = time.Time{}
		if c.Releases == nil {
			c.Releases = []fleet.Release{}
		}
		if c.Refused == nil {
			c.Refused = []fleet.Refused{}
		}
		data, _ := json.Marshal(c)
		return data
	}
	return string(norm(a)) == string(norm(b))
}
