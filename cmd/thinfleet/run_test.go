package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
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
	data, http, public := dataFlag(fs), httpFlagsOn(fs), publicURLFlag(fs)
	if err := settings.Parse(fs, []string{"--data", "/flag/data"}, func(k string) string { return env[k] }, nil); err != nil {
		t.Fatal(err)
	}
	if *public != "http://fleet.example:8080" || http.addr != ":9999" {
		t.Errorf("from env: public-url %q, http %q", *public, http.addr)
	}
	if *data != "/flag/data" {
		t.Errorf("data = %q, want the flag to win over the environment", *data)
	}
}

// TestCommandFlags makes every command's flag set, as run does (a flag
// defined twice panics), and checks that each command takes the flags
// its users' scripts pass: they are a contract (README, DESIGN.md).
func TestCommandFlags(t *testing.T) {
	service := "ca log-format log-level metrics nats-url replicas service-token"
	want := map[string]string{
		"server":      "approve-devices data enroll-burst enroll-rate http http-conns http-conns-per-addr http-idle-timeout http-read-timeout http-write-stall log-format log-level memory-limit nats pprof public-url publisher-key rescan retry-first retry-max retry-tries server-name tls-cert tls-key updates",
		"broker":      "approve-devices cluster cluster-name data enroll-burst enroll-rate log-format log-level metrics nats replicas routes server-name tls-cert tls-key",
		"enroll":      "approve-devices ca enroll-burst enroll-rate log-format log-level metrics nats-url replicas service-token",
		"nats-config": "data log-format log-level",
		"catalog":     "ca log-format log-level metrics nats-url publisher-key replicas rescan service-token updates",
		"decision":    "ca download-key log-format log-level metrics nats-url public-url replicas retry-first retry-max retry-tries service-token",
		"presence":    service,
		"inventory":   service,
		"intake":      service,
		"history":     service,
		"web":         "ca download-key http http-conns http-conns-per-addr http-idle-timeout http-read-timeout http-write-stall log-format log-level nats-url public-url replicas rescan service-token tls-cert tls-key updates",
		"keygen":      "log-format log-level out",
		"sign":        "key log-format log-level",
		"devices":     "api data log-format log-level remove selector",
		"pin":         "api data group log-format log-level reason remove",
		"groups":      "api channel data log-format log-level selector window",
		"rollout":     "api data errors group interval json log-format log-level max-concurrent once reason selector success version waves",
		"audit":       "action api before data json limit log-format log-level target",
		"healthcheck": "log-format log-level url",
		"tokens":      "dashboard data http-port log-format log-level nats-port",
	}
	for name, c := range commands {
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		logFlagsOn(fs)
		c.flags(fs)
		var got []string
		fs.VisitAll(func(f *flag.Flag) { got = append(got, f.Name) })
		if strings.Join(got, " ") != want[name] {
			t.Errorf("thinfleet %s flags:\n got %s\nwant %s", name, strings.Join(got, " "), want[name])
		}
	}
	if len(commands) != len(want) {
		t.Errorf("%d commands, want %d", len(commands), len(want))
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

// TestNATSConfigNeedsTokens runs nats-config on folders without tokens,
// which it refuses, leaving them as they were: new tokens would print a
// trust no server shares. Tokens made by the tokens command, or given in
// the environment, work.
func TestNATSConfigNeedsTokens(t *testing.T) {
	noenv := func(string) string { return "" }
	nats := func(dir string, getenv func(string) string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"nats-config", "--data", dir}, getenv, &stdout, &stderr)
		return stdout.String(), err
	}
	entries := func(dir string) []string {
		es, _ := os.ReadDir(dir)
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}

	empty := t.TempDir()
	missing := filepath.Join(t.TempDir(), "data")
	for _, dir := range []string{empty, missing} {
		out, err := nats(dir, noenv)
		want := dir + " holds no service.token: run thinfleet server/broker/tokens --data " + dir + " first, or set THINFLEET_SERVICE_TOKEN"
		if err == nil || err.Error() != want {
			t.Errorf("nats-config --data %s: err %v, want %q", dir, err, want)
		}
		if out != "" {
			t.Errorf("nats-config --data %s printed %q", dir, out)
		}
		if names := entries(dir); len(names) != 0 {
			t.Errorf("nats-config --data %s left %q in it", dir, names)
		}
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("nats-config made %s", missing)
	}

	// Only the service token there: the enrollment token is asked for.
	half := t.TempDir()
	if err := os.WriteFile(filepath.Join(half, "service.token"), []byte("kept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nats(half, noenv); err == nil || !strings.Contains(err.Error(), "holds no enroll.token") {
		t.Errorf("nats-config with no enroll.token: err %v", err)
	}
	if names := entries(half); len(names) != 1 {
		t.Errorf("nats-config left %q", names)
	}

	made := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"tokens", "--data", made}, noenv, &stdout, &stderr); err != nil {
		t.Fatalf("tokens: %v", err)
	}
	before := entries(made)
	first, err := nats(made, noenv)
	if err != nil || !strings.Contains(first, `"operator"`) {
		t.Fatalf("nats-config after tokens: %v\n%s", err, first)
	}
	again, err := nats(made, noenv)
	if err != nil || withoutSigningTimes(again) != withoutSigningTimes(first) {
		t.Errorf("nats-config twice printed different trusts (%v)", err)
	}
	if after := entries(made); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("nats-config changed the folder: %q, was %q", after, before)
	}

	fromEnv := func(k string) string {
		return map[string]string{"THINFLEET_SERVICE_TOKEN": "env-service", "THINFLEET_ENROLL_TOKEN": "env-enroll"}[k]
	}
	if out, err := nats(empty, fromEnv); err != nil || !strings.Contains(out, `"operator"`) {
		t.Errorf("nats-config with the tokens in the environment: %v\n%s", err, out)
	}
	if names := entries(empty); len(names) != 0 {
		t.Errorf("nats-config with the environment's tokens left %q", names)
	}
}

// jwtPattern matches a NATS JWT (header, claims, signature).
var jwtPattern = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+`)

// withoutSigningTimes replaces each JWT in out with its claims less the
// two that change with the second it was signed (iat, and jti, a hash
// over the claims): the same keys and permissions read the same.
func withoutSigningTimes(out string) string {
	return jwtPattern.ReplaceAllStringFunc(out, func(tok string) string {
		raw, err := base64.RawURLEncoding.DecodeString(jwtPattern.FindStringSubmatch(tok)[1])
		if err != nil {
			return tok
		}
		var claims map[string]any
		if json.Unmarshal(raw, &claims) != nil {
			return tok
		}
		delete(claims, "iat")
		delete(claims, "jti")
		b, _ := json.Marshal(claims)
		return string(b)
	})
}

// TestClusterNeedsServerName: the host name is no default for a node of
// a cluster, as nodes may share a host; the broker refuses to start
// without --server-name, and makes nothing in the data folder.
func TestClusterNeedsServerName(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"broker", "--data", data, "--nats", "127.0.0.1:0", "--cluster", "127.0.0.1:0", "--routes", "127.0.0.1:1"},
		func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--server-name") {
		t.Errorf("broker --cluster without --server-name: %v, want an error naming --server-name", err)
	}
	if _, err := os.Stat(data); err == nil {
		t.Errorf("the refused broker made %s", data)
	}
}
