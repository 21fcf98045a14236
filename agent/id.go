package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thinfleet/thinfleet/wire"
)

// resolveID returns the device id: the given one, else the one kept in
// <state>/id, else a new one, which it keeps there for every later start.
func resolveID(given, stateDir string) (string, error) {
	if given != "" {
		if err := wire.ValidateID(given); err != nil {
			return "", fmt.Errorf("id %q: %w", given, err)
		}
		return given, nil
	}
	path := filepath.Join(stateDir, "id")
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(data))
		if err := wire.ValidateID(id); err != nil {
			return "", fmt.Errorf("id in %s: %w", path, err)
		}
		return id, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read id: %w", err)
	}
	host, _ := os.Hostname()
	id := newID(host, randomHex(4))
	if err := writeFileAtomic(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("keep new id: %w", err)
	}
	return id, nil
}

// newID builds an id from the short host name, reduced to the characters
// an id allows, and a random suffix that keeps two machines of the same name
// apart.
func newID(host, suffix string) string {
	host, _, _ = strings.Cut(host, ".") // kiosk.example.com → kiosk
	var b strings.Builder
	for _, r := range strings.ToLower(host) {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	name := strings.Trim(b.String(), "-_")
	if len(name) > wire.MaxIDLength-len(suffix)-1 {
		name = name[:wire.MaxIDLength-len(suffix)-1]
	}
	if name == "" {
		name = "agent"
	}
	return name + "-" + suffix
}
