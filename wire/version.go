package wire

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-version"
)

// MaxVersionLength is the longest version string.
const MaxVersionLength = 64

// CompareVersions compares two versions as versions, not strings:
// 1.10 > 1.9, 1.0 = 1.0.0 and 2.0-beta < 2.0. It returns -1, 0 or +1, or
// an error if either does not parse.
func CompareVersions(a, b string) (int, error) {
	va, err := ParseVersion(a)
	if err != nil {
		return 0, err
	}
	if a == b {
		return 0, nil // the common case, without Compare's allocations
	}
	vb, err := ParseVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

// ParseVersion parses a version such as 1.2, 1.2.0 or 2.0-beta.1. The
// result is shared: the caller must not change it.
func ParseVersion(s string) (*version.Version, error) {
	if len(s) > MaxVersionLength {
		return nil, fmt.Errorf("version longer than %d bytes", MaxVersionLength)
	}
	if v, ok := parsed.Load(s); ok {
		return v.(*version.Version), nil
	}
	v, err := version.NewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("version %q: not a version like 1.2.0", truncate(s, 70))
	}
	// A fleet runs a handful of versions, compared for every device on
	// every decision: each is parsed once. The cache is bounded (emptied
	// when full), whatever versions agents report.
	if parsedCount.Add(1) > maxParsed {
		parsed.Clear()
		parsedCount.Store(1)
	}
	parsed.Store(s, v)
	return v, nil
}

const maxParsed = 4096

var (
	parsed      sync.Map // version string → *version.Version
	parsedCount atomic.Int64
)

// Newer reports whether candidate is a higher version than installed.
// An empty installed version is older than every version.
func Newer(candidate, installed string) bool {
	if installed == "" {
		return true
	}
	c, err := CompareVersions(candidate, installed)
	return err == nil && c > 0
}

func validateVersion(field, v string) error {
	if v == "" {
		return fmt.Errorf("%s: required", field)
	}
	if _, err := ParseVersion(v); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

func validateOptionalVersion(field, v string) error {
	if v == "" {
		return nil
	}
	return validateVersion(field, v)
}
