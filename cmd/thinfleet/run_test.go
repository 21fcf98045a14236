package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/settings"
)

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args       []string
		wantErr    bool
		wantStdout string
		wantStderr string
	}{
		{[]string{"--help"}, false, "thinfleet server", ""},
		{[]string{"version"}, false, "thinfleet dev", ""},
		{nil, true, "", "Usage:"},
		{[]string{"launch"}, true, "", "Usage:"},
		{[]string{"server", "-h"}, false, "", "-public-url"},
		{[]string{"server", "--log-format", "xml", "--data", "x"}, true, "", ""},
		{[]string{"server", "extra"}, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, func(string) string { return "" }, &stdout, &stderr)
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error %v", err, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestEnvironmentFillsFlags(t *testing.T) {
	env := map[string]string{"THINFLEET_PUBLIC_URL": "http://fleet.example:8080", "THINFLEET_HTTP": ":9999", "THINFLEET_DATA": "/env/data"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var o options
	o.register(fs, flagData|flagHTTP|flagPublicURL)
	if err := settings.Parse(fs, []string{"--data", "/flag/data"}, func(k string) string { return env[k] }, nil); err != nil {
		t.Fatal(err)
	}
	if o.publicURL != "http://fleet.example:8080" || o.http != ":9999" {
		t.Errorf("from env: public-url %q, http %q", o.publicURL, o.http)
	}
	if o.data != "/flag/data" {
		t.Errorf("data = %q, want the flag to win over the environment", o.data)
	}
}

func TestSecretsGeneratedOnce(t *testing.T) {
	dir := t.TempDir()
	noenv := func(string) string { return "" }
	first, err := loadSecrets(dir, noenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.generated) != 4 || first.admin == "" || first.admin == first.enroll || len(first.download) < 16 || first.download == first.admin {
		t.Fatalf("first start: %+v", first)
	}
	again, err := loadSecrets(dir, noenv)
	if err != nil {
		t.Fatal(err)
	}
	if again.admin != first.admin || again.enroll != first.enroll || again.download != first.download || len(again.generated) != 0 {
		t.Errorf("second start made new tokens: %+v", again)
	}
	st, err := os.Stat(filepath.Join(dir, "admin.token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("admin.token: %v, mode %v, want 0600", err, st.Mode())
	}
	fromEnv, _ := loadSecrets(dir, func(k string) string {
		if k == "THINFLEET_ADMIN_TOKEN" {
			return "from-env"
		}
		return ""
	})
	if fromEnv.admin != "from-env" {
		t.Errorf("admin = %q, want the environment's", fromEnv.admin)
	}
}

func TestPublicURL(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		flag string
		addr net.Addr
		want string
	}{
		{"http://fleet:80/", &net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "http://fleet:80"},
		{"", &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8080}, "http://127.0.0.1:8080"},
		{"", &net.TCPAddr{IP: net.IPv6unspecified, Port: 81}, "http://" + net.JoinHostPort(host, "81")},
	}
	for _, tt := range tests {
		if got := publicURL(tt.flag, "http", tt.addr); got != tt.want {
			t.Errorf("publicURL(%q, %v) = %q, want %q", tt.flag, tt.addr, got, tt.want)
		}
	}
}
