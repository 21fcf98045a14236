package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/fleet"
)

// TestRetryFlags: the server's --retry-* flags (here from the
// environment) are the automatic retry of failed installs: with two tries
// a fast pause apart, an agent whose install always fails is held back
// after its second failure, in seconds rather than the default's minutes.
// A policy that cannot be meant is refused before anything starts.
func TestRetryFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--retry-first", "0s"},
		{"--retry-first", "1m", "--retry-max", "10s"},
		{"--retry-tries", "0"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"decision", "--public-url", "http://x:1"}, args...), func(string) string { return "" }, &out, &out)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("decision %s: %v, want an error naming %s", strings.Join(args, " "), err, args[0])
		}
	}

	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, data, map[string]string{"THINFLEET_RETRY_FIRST": "100ms", "THINFLEET_RETRY_TRIES": "2"})
	token := readToken(t, filepath.Join(data, "admin.token"))
	tmp := filepath.Join(t.TempDir(), "update.zip")
	writeTestZip(t, tmp, `{"name": "Broken", "version": "2.0.0", "command": "echo no printer; exit 3"}`)
	if err := os.Rename(tmp, filepath.Join(data, "updates", "broken-2.0.0.zip")); err != nil {
		t.Fatal(err)
	}
	startAgents(t, s, map[string]map[string]string{"kiosk-1": nil})
	waitFor(t, "kiosk-1 held back after two failed installs", func() (bool, string) {
		_, body := get(t, s.api, "/api/v1/devices/kiosk-1", token)
		var d fleet.Device
		if json.Unmarshal([]byte(body), &d) != nil || d.Retries == nil {
			return false, body
		}
		return d.Retries.HeldBack && d.Retries.Failures == 2 && d.Retries.Tries == 2, body
	})
}
