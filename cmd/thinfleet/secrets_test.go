package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWeakAdminTokenRefused starts the server and the web service with
// weak admin tokens, from the environment and from the data folder: each
// refuses to start, naming where the token came from and how to make one.
func TestWeakAdminTokenRefused(t *testing.T) {
	tests := []struct {
		name, cmd, env, file, want string
	}{
		{"short, environment", "server", "e2e-admin-token", "", "THINFLEET_ADMIN_TOKEN"},
		{"short, file", "server", "", "hunter2", "admin.token"},
		{"few characters", "server", "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb", "", "distinct"},
		{"repeated", "server", "abcdefghabcdefghabcdefghabcdefgh", "", "repeats"},
		{"web alone", "web", "changeme", "", "THINFLEET_ADMIN_TOKEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			if tt.file != "" {
				os.MkdirAll(data, 0o700)
				if err := os.WriteFile(filepath.Join(data, "admin.token"), []byte(tt.file+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{"THINFLEET_ADMIN_TOKEN": tt.env}
			args := []string{tt.cmd, "--updates", filepath.Join(dir, "updates"), "--http", "127.0.0.1:0"}
			if tt.cmd == "server" {
				args = append(args, "--data", data, "--nats", "127.0.0.1:0")
			} else {
				args = append(args, "--nats-url", "nats://127.0.0.1:1")
			}
			// A server that accepts the token runs until ctx ends: the
			// bound turns that into a failure, not a hang.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			err := run(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr)
			if err == nil {
				t.Fatal("started with a weak admin token")
			}
			for _, want := range []string{"too weak", tt.want, "openssl rand -hex 16"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}
