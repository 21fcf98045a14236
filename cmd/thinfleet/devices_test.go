package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevicesAPIAddress lists the devices of a running server with --api
// given as a URL and as host:port, and reports a server that is not
// there in words, with the address tried.
func TestDevicesAPIAddress(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, data, nil)
	hostPort := strings.TrimPrefix(s.api, "http://")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	tests := []struct {
		api     string
		want    string // on stdout
		wantErr string
	}{
		{s.api, "ID  STATE", ""},
		{hostPort, "ID  STATE", ""},
		{closed, "", fmt.Sprintf("no thinfleet server at http://%s: connection refused; is it running? (--api)", closed)},
		{"http://" + closed + "/", "", fmt.Sprintf("no thinfleet server at http://%s: connection refused; is it running? (--api)", closed)},
	}
	for _, tt := range tests {
		t.Run(tt.api, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"devices", "--api", tt.api, "--data", data, "list"}, func(string) string { return "" }, &stdout, &stderr)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("devices: %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("devices: err %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.want) {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.want)
			}
		})
	}
}
