package agent

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This file tests what the agent's log tells whoever watches it: that a
// long download is moving, what approves a pending device, that a
// revoked one is out.

// logLines returns the log's lines that have every part.
func logLines(l *logBuffer, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// TestDownloadProgressLogged: a download says how far it is at each
// quarter, with bytes done of total and a rate, and once when done.
func TestDownloadProgressLogged(t *testing.T) {
	f := startFleet(t, -1)
	z := newZipServer(t)
	ta := startAgent(t, f.url(), Options{})
	waitReady(t, f, "dev-1", 1)
	data := makeZip(t, "1.1", "true", map[string]string{"big": randomHex(400_000)})
	f.offer("dev-1", z.put("/u.zip", "1.1", "true", data))
	waitFor(t, "install of 1.1 ends", func() (bool, string) { return done(f, "dev-1", "1.1") })

	total := strconv.Itoa(len(data))
	progress := logLines(ta.log, "msg=downloading", "version=1.1", "total="+total, "rate=")
	if len(progress) < 3 {
		t.Fatalf("%d progress lines, want one at each of 25%%, 50%%, 75%%:\n%s", len(progress), ta.log)
	}
	percent := regexp.MustCompile(` percent=(\d+) `)
	last := 0
	for _, line := range progress {
		m := percent.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("progress line without percent: %s", line)
		}
		p, _ := strconv.Atoi(m[1])
		if p <= last || p >= 100 {
			t.Errorf("percent %d after %d, want rising below 100: %s", p, last, line)
		}
		last = p
	}
	if got := logLines(ta.log, "msg=downloaded", "version=1.1", "bytes="+total, "rate="); len(got) != 1 {
		t.Errorf("%d lines saying the download finished, want 1:\n%s", len(got), ta.log)
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		n    int64
		d    time.Duration
		want string
	}{
		{0, 0, "-"},
		{500, time.Second, "500.0B/s"},
		{120_000_000, 25 * time.Second, "4.8MB/s"},
		{3_000_000_000, time.Second, "3.0GB/s"},
	}
	for _, tt := range tests {
		if got := rate(tt.n, tt.d); got != tt.want {
			t.Errorf("rate(%d, %s) = %q, want %q", tt.n, tt.d, got, tt.want)
		}
	}
}
