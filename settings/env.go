// Package settings reads a thinfleet binary's settings, the same way in
// both: flags, each also read from THINFLEET_<NAME>, which may in turn
// come from a file named by THINFLEET_<NAME>_FILE (the docker secrets
// convention, so tokens need not sit in a process's environment); and the
// logger the flags ask for.
package settings

import (
	"os"
	"strings"
)

// Getenv wraps getenv: a THINFLEET_ variable that is unset is read from
// the file its _FILE variable names, trimmed. A file that cannot be read
// reads as unset, so the setting's own "missing" error names it.
func Getenv(getenv func(string) string) func(string) string {
	return func(name string) string {
		if v := getenv(name); v != "" || !strings.HasPrefix(name, "THINFLEET_") {
			return v
		}
		path := getenv(name + "_FILE")
		if path == "" {
			return ""
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(data))
	}
}
