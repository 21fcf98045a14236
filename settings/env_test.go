package settings

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGetenv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "service.token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"THINFLEET_SERVICE_TOKEN_FILE": file,
		"THINFLEET_ADMIN_TOKEN":        "direct",
		"THINFLEET_ADMIN_TOKEN_FILE":   file,
		"THINFLEET_ENROLL_TOKEN_FILE":  filepath.Join(dir, "missing"),
		"OTHER_FILE":                   file,
	}
	getenv := Getenv(func(k string) string { return env[k] })
	tests := []struct{ name, want string }{
		{"THINFLEET_SERVICE_TOKEN", "from-file"}, // read from the file, trimmed
		{"THINFLEET_ADMIN_TOKEN", "direct"},      // the variable wins
		{"THINFLEET_ENROLL_TOKEN", ""},           // an unreadable file reads as unset
		{"OTHER", ""},                            // only thinfleet's variables
	}
	for _, tt := range tests {
		if got := getenv(tt.name); got != tt.want {
			t.Errorf("getenv(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
