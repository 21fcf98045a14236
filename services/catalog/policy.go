package catalog

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// target chooses the version to offer, and says why in a sentence. prev
// is the catalog as it stands: a policy file that is refused (it cannot
// be read, names no version, or names one no valid zip provides, or its
// line in the seed system's form does not match a release) leaves the
// target as it was, and the reason says why.
func (s *Service) target(releases []fleet.Release, prev fleet.Catalog) (string, string) {
	policy := filepath.Join(filepath.Base(s.dir), PolicyFile)
	line, err := readPolicy(filepath.Join(s.dir, PolicyFile))
	var why string
	switch {
	case err != nil:
		why = fmt.Sprintf("cannot read it (%v)", err)
	case line == "" && len(releases) == 0:
		return "", "no valid release in the updates folder"
	case line == "":
		// Releases of other channels (beta, …) reach only the groups
		// that follow them (fleet.Plan).
		for _, r := range releases {
			if fleet.ReleaseChannel(r) == fleet.DefaultChannel {
				return r.Version, "newest valid release"
			}
		}
		return "", "no valid release of the " + fleet.DefaultChannel + " channel; only groups that follow a channel are offered theirs"
	case isPolicyLine(line):
		var version string
		if version, why = checkPolicyLine(line, releases); why == "" {
			return version, "pinned by " + policy
		}
	default:
		if _, err := wire.ParseVersion(line); err != nil {
			why = fmt.Sprintf("%q is not a version", shorten(line))
		} else if r, ok := release(releases, line); ok {
			return r.Version, "pinned by " + policy
		} else {
			why = fmt.Sprintf("version %s is not a valid release in the folder", line)
		}
	}
	why = policy + " refused: " + why
	if r, ok := release(releases, prev.Target); ok {
		return r.Version, fmt.Sprintf("%s; the target stays %s", why, r.Version)
	}
	return "", why + "; nothing is offered"
}

// release returns the release of version v.
func release(releases []fleet.Release, v string) (fleet.Release, bool) {
	if v == "" {
		return fleet.Release{}, false
	}
	for _, r := range releases {
		if c, err := wire.CompareVersions(r.Version, v); err == nil && c == 0 {
			return r, true
		}
	}
	return fleet.Release{}, false
}

// isPolicyLine reports whether a policy file's line is in the seed
// system's form, five quoted fields separated by commas:
//
//	'Update 1', '1.0', 'abc', '/downloads/update1', 'tarxyz'
//
// rather than a bare version.
func isPolicyLine(line string) bool {
	return strings.HasPrefix(line, "'") || strings.HasPrefix(line, `"`) || strings.Contains(line, ",")
}

// checkPolicyLine reads a line in the seed system's form (name, version,
// checksum, link, command) and returns the version it pins, or why it is
// refused: the version must be a release's, and the checksum that
// release's sha256, unless it is a placeholder shorter than a digest
// (the seed system's 'abc'). The name, link and command are the
// operator's notes: the release's own are offered.
func checkPolicyLine(line string, releases []fleet.Release) (string, string) {
	fields, err := splitPolicyLine(line)
	if err != nil {
		return "", err.Error()
	}
	version, checksum := fields[1], strings.ToLower(fields[2])
	if _, err := wire.ParseVersion(version); err != nil {
		return "", fmt.Sprintf("%q is not a version", shorten(version))
	}
	r, ok := release(releases, version)
	if !ok {
		return "", fmt.Sprintf("version %s is not a valid release in the folder", version)
	}
	if len(checksum) >= sha256.Size*2 && checksum != r.SHA256 {
		return "", fmt.Sprintf("checksum %s is not the sha256 of %s (%s)", shorten(checksum), r.File, r.SHA256)
	}
	return r.Version, ""
}

// splitPolicyLine splits a line of five quoted fields, each in single or
// double quotes, separated by commas.
func splitPolicyLine(line string) ([]string, error) {
	const form = `want 'name', 'version', 'checksum', 'link', 'command'`
	var fields []string
	rest := strings.TrimSpace(line)
	for {
		if rest == "" || (rest[0] != '\'' && rest[0] != '"') {
			return nil, fmt.Errorf("field %d is not quoted; %s", len(fields)+1, form)
		}
		end := strings.IndexByte(rest[1:], rest[0])
		if end < 0 {
			return nil, fmt.Errorf("field %d has no closing quote; %s", len(fields)+1, form)
		}
		fields = append(fields, strings.TrimSpace(rest[1:1+end]))
		rest = strings.TrimSpace(rest[2+end:])
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("a comma must follow field %d; %s", len(fields), form)
		}
		rest = strings.TrimSpace(rest[1:])
	}
	if len(fields) != 5 {
		return nil, fmt.Errorf("%d fields; %s", len(fields), form)
	}
	return fields, nil
}

// readPolicy returns the version the policy file names: its first line
// that is neither empty nor a # comment. A missing file, or one naming
// nothing, gives "".
func readPolicy(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line, nil
		}
	}
	return "", nil
}

func shorten(s string) string {
	if len(s) > 70 {
		return s[:70] + "…"
	}
	return s
}
