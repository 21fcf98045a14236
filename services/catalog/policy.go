package catalog

import (
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

// target chooses the version to offer, and says why in a sentence.
func (s *Service) target(releases []fleet.Release) (string, string) {
	policy := filepath.Join(filepath.Base(s.dir), PolicyFile)
	pinned, err := readPolicy(filepath.Join(s.dir, PolicyFile))
	switch {
	case err != nil:
		return "", fmt.Sprintf("cannot read %s (%v); nothing is offered", policy, err)
	case pinned == "" && len(releases) == 0:
		return "", "no valid release in the updates folder"
	case pinned == "":
		return releases[0].Version, "newest valid release"
	}
	if _, err := wire.ParseVersion(pinned); err != nil {
		return "", fmt.Sprintf("%s names %q, which is not a version; nothing is offered", policy, shorten(pinned))
	}
	for _, r := range releases {
		if c, err := wire.CompareVersions(r.Version, pinned); err == nil && c == 0 {
			return r.Version, "pinned by " + policy
		}
	}
	return "", fmt.Sprintf("%s pins version %s, which no valid zip provides; nothing is offered", policy, pinned)
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
