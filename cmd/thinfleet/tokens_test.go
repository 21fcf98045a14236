package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestTokensAddresses runs "tokens" as docker compose does, with the
// published ports as THINFLEET_HTTP_PORT and THINFLEET_NATS_PORT hold
// them: a port, or a host and port.
func TestTokensAddresses(t *testing.T) {
	tests := []struct {
		name          string
		args          []string
		wantDashboard string
		wantAgents    string
	}{
		{"defaults", []string{"--http-port", "8080", "--nats-port", "4222"},
			"dashboard and API: http://localhost:8080 ", "thinfleet-agent --server nats://HOST:4222 "},
		{"other ports", []string{"--http-port", "9080", "--nats-port", "5222"},
			"dashboard and API: http://localhost:9080 ", "thinfleet-agent --server nats://HOST:5222 "},
		{"host and port", []string{"--http-port", "127.0.0.1:8080", "--nats-port", "127.0.0.1:4222"},
			"dashboard and API: http://127.0.0.1:8080 ", "thinfleet-agent --server nats://127.0.0.1:4222 "},
		{"every address", []string{"--http-port", "0.0.0.0:8080", "--nats-port", "[::]:4222"},
			"dashboard and API: http://localhost:8080 ", "thinfleet-agent --server nats://HOST:4222 "},
		{"IPv6", []string{"--http-port", "[::1]:8080", "--nats-port", "[::1]:4222"},
			"dashboard and API: http://[::1]:8080 ", "thinfleet-agent --server nats://[::1]:4222 "},
		{"dashboard given", []string{"--dashboard", "https://fleet.example", "--http-port", "8080"},
			"dashboard and API: https://fleet.example ", "thinfleet-agent --server nats://HOST:4222 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"tokens", "--data", t.TempDir()}, tt.args...)
			if err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
				t.Fatalf("tokens: %v\n%s", err, stderr.String())
			}
			for _, want := range []string{tt.wantDashboard, tt.wantAgents} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, stdout.String())
				}
			}
		})
	}
}
