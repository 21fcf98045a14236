package bundle

import (
	"strings"
	"unicode/utf8"
)

// Bounds on an entry name, in bytes, kept below what common file systems
// accept (PATH_MAX 4096, NAME_MAX 255) so a name fails here, with a
// reason, rather than as a write error on some agents.
const (
	maxNameLength    = 1024
	maxElementLength = 255
)

// cleanName checks a zip entry's name and returns it without a trailing
// slash. It accepts only clean, relative, slash-separated paths: no
// absolute paths, drive letters, backslashes, control characters, or
// empty, "." or ".." elements. Refusing every unclean spelling, instead of
// cleaning it, also means two entries name the same path only if their
// names are equal, which the duplicate check relies on.
func cleanName(raw string) (string, error) {
	name := strings.TrimSuffix(raw, "/")
	switch {
	case raw == "":
		return "", refuseEntry(raw, "empty name")
	case !utf8.ValidString(raw):
		return "", refuseEntry(raw, "name is not valid UTF-8")
	case strings.IndexByte(raw, 0) >= 0:
		return "", refuseEntry(raw, "name contains a NUL byte")
	case strings.IndexFunc(raw, isControl) >= 0:
		return "", refuseEntry(raw, "name contains a control character")
	case raw[0] == '/':
		return "", refuseEntry(raw, "absolute path")
	case hasDriveLetter(raw):
		return "", refuseEntry(raw, "name starts with a drive letter")
	case strings.Contains(raw, `\`):
		return "", refuseEntry(raw, "name contains a backslash; zip names use /")
	case len(raw) > maxNameLength:
		return "", refuseEntry(raw, "name longer than %d bytes", maxNameLength)
	}
	depth, dotdot := 0, false
	for _, el := range strings.Split(name, "/") {
		switch {
		case el == "..":
			if depth--; depth < 0 {
				return "", refuseEntry(raw, "path leaves the package")
			}
			dotdot = true
		case el == "" || el == ".":
			return "", refuseEntry(raw, "not a clean path (empty or . element)")
		case len(el) > maxElementLength:
			return "", refuseEntry(raw, "a path element is longer than %d bytes", maxElementLength)
		default:
			depth++
		}
	}
	if dotdot {
		return "", refuseEntry(raw, "name contains a .. element")
	}
	return name, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func hasDriveLetter(s string) bool {
	if len(s) < 2 || s[1] != ':' {
		return false
	}
	c := s[0] | 0x20 // lower case
	return 'a' <= c && c <= 'z'
}
