package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/broker/brokertest"
	fleetstate "github.com/thinfleet/thinfleet/fleet"
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

// loud returns the lines of the log at WARN or ERROR.
func loud(l *logBuffer) []string {
	var out []string
	for _, line := range logLines(l) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			out = append(out, line)
		}
	}
	return out
}

// TestPendingNamesTheApproval: an agent waiting for an operator's
// approval says once which command approves it, polls quietly, and
// enrolls once approved.
func TestPendingNamesTheApproval(t *testing.T) {
	srv := brokertest.Start(t, brokertest.Options{EnrollToken: testToken, Approve: true})
	ta := startAgent(t, srv.URL, Options{})
	want := `waiting for an operator to approve this device; on the server run: thinfleet devices approve dev-1`
	waitFor(t, "the log naming the approval", func() (bool, string) {
		return ta.log.contains(want), ta.log.String()
	})
	waitFor(t, "two more polls", func() (bool, string) {
		n := len(logLines(ta.log, "still waiting for an operator's approval"))
		return n >= 2, fmt.Sprint(n)
	})
	if got := logLines(ta.log, "waiting for an operator"); len(loud(ta.log)) != 1 || !strings.Contains(got[0], want) {
		t.Errorf("warnings while pending = %q, want one, naming the command", loud(ta.log))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := srv.Store.SetEnrollState(ctx, "dev-1", fleetstate.EnrollApproved); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent enrolled after the approval", func() (bool, string) {
		return ta.log.contains("msg=enrolled"), ""
	})
}

// revoke revokes device id as an operator does.
func revoke(t *testing.T, f *fleet, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f.srv.Store.SetEnrollState(ctx, id, fleetstate.EnrollRevoked); err != nil {
		t.Fatal(err)
	}
}

// revokedSaid is what a revoked agent says, once.
const revokedSaid = `this device has been revoked by an operator: the server refuses it`

// TestRevokedSaysSoOnce revokes a connected agent: the broker closes its
// connection and refuses it from then on. The agent says it was revoked
// once, then retries with a growing pause and nothing louder than debug.
func TestRevokedSaysSoOnce(t *testing.T) {
	f := startFleet(t, -1)
	ta := startAgent(t, f.url(), Options{})
	waitReady(t, f, "dev-1", 1)
	before := len(loud(ta.log))
	revoke(t, f, "dev-1")
	waitFor(t, "the log saying the device is revoked", func() (bool, string) {
		return ta.log.contains(revokedSaid), ""
	})
	refused := func() int { return len(logLines(ta.log, "still revoked")) }
	waitFor(t, "three more refused attempts", func() (bool, string) { return refused() >= 3, fmt.Sprint(refused()) })
	said := logLines(ta.log, revokedSaid)
	if len(said) != 1 || !strings.Contains(said[0], "level=ERROR") {
		t.Errorf("the revocation said %d times, want once as an error: %q", len(said), said)
	}
	if got := loud(ta.log)[before:]; len(got) > 3 {
		t.Errorf("%d warnings and errors since the revocation, want at most the disconnect, the first refusal and the revocation:\n%s",
			len(got), strings.Join(got, "\n"))
	}
}

// TestRevokedAtStart restarts a revoked agent whose credentials are gone:
// asking for new ones with its key, it is refused as revoked, says so
// once, and asks again rarely.
func TestRevokedAtStart(t *testing.T) {
	f := startFleet(t, -1)
	dir := t.TempDir()
	first := startAgent(t, f.url(), Options{StateDir: dir})
	waitReady(t, f, "dev-1", 1)
	first.stop(t)
	revoke(t, f, "dev-1")
	if err := os.Remove(filepath.Join(dir, credsFile)); err != nil {
		t.Fatal(err)
	}
	ta := startAgent(t, f.url(), Options{StateDir: dir})
	waitFor(t, "three refused enrollments", func() (bool, string) {
		n := len(logLines(ta.log, "this device has been revoked"))
		return n >= 3, fmt.Sprint(n)
	})
	// One loud line says the device is revoked; the refusals after it
	// are quiet. A request that timed out on a loaded machine is a
	// warning of its own, not a refusal: it does not count.
	var got []string
	for _, l := range loud(ta.log) {
		if !strings.Contains(l, "not enrolled yet") || !strings.Contains(l, "deadline exceeded") {
			got = append(got, l)
		}
	}
	if len(got) != 1 || !strings.Contains(got[0], revokedSaid) {
		t.Errorf("warnings and errors = %q, want one, saying the device is revoked", got)
	}
}
