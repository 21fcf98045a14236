package agent

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/wire"
)

// TestBrokenCredentials breaks the credentials of an enrolled agent on
// disk, the ways a disk or a copy breaks them, and starts it again: it
// says what is wrong and enrolls again, with its own key where that
// survived, so that it reports again by itself.
func TestBrokenCredentials(t *testing.T) {
	garbage := func(t *testing.T, path string) {
		b := make([]byte, 300)
		rand.Read(b)
		writeTest(t, path, b)
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		// sameKey: the agent keeps its key and reports again; otherwise
		// it has a new key, which the server refuses for this id.
		sameKey bool
		log     []string // what the log must say, besides the creds
	}{
		{"random bytes", func(t *testing.T, dir string) { garbage(t, filepath.Join(dir, credsFile)) }, true, nil},
		{"truncated", func(t *testing.T, dir string) {
			path := filepath.Join(dir, credsFile)
			data := readTest(t, path)
			writeTest(t, path, data[:len(data)/2])
		}, true, nil},
		{"empty", func(t *testing.T, dir string) { writeTest(t, filepath.Join(dir, credsFile), nil) }, true, nil},
		{"JWT damaged, key file gone", func(t *testing.T, dir string) {
			path := filepath.Join(dir, credsFile)
			data := readTest(t, path)
			i := bytes.Index(data, []byte("eyJ")) + 40 // inside the JWT's claims
			data[i] ^= 0x01
			writeTest(t, path, data)
			if err := os.Remove(filepath.Join(dir, keyFile)); err != nil {
				t.Fatal(err)
			}
		}, true, []string{"key taken from the credentials file"}},
		{"key file corrupt too", func(t *testing.T, dir string) {
			garbage(t, filepath.Join(dir, credsFile))
			garbage(t, filepath.Join(dir, keyFile))
		}, false, []string{"agent.nk is corrupt", "made a new key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFleet(t, -1)
			dir := t.TempDir()
			first := startAgent(t, f.url(), Options{StateDir: dir})
			waitFor(t, "the first hardware report", func() (bool, string) {
				return len(decodeAll[wire.HWReport](f, wire.HWReportSubject("dev-1"))) > 0, ""
			})
			first.stop(t)
			key := publicKey(t, dir)
			reports := len(decodeAll[wire.HWReport](f, wire.HWReportSubject("dev-1")))

			tt.damage(t, dir)
			ta := startAgent(t, f.url(), Options{StateDir: dir})
			for _, want := range append([]string{filepath.Join(dir, credsFile) + " is unreadable or corrupt; enrolling again"}, tt.log...) {
				waitFor(t, fmt.Sprintf("the log saying %q", want), func() (bool, string) {
					return ta.log.contains(want), ta.log.String()
				})
			}
			if !tt.sameKey {
				waitFor(t, "the server's refusal of the new key, in the log", func() (bool, string) {
					return ta.log.contains("the server refused to enroll this device", "enrolled with another key"), ""
				})
				if publicKey(t, dir) == key {
					t.Error("the corrupt key was kept")
				}
				return
			}
			waitFor(t, "a hardware report after enrolling again", func() (bool, string) {
				n := len(decodeAll[wire.HWReport](f, wire.HWReportSubject("dev-1")))
				return n > reports, fmt.Sprint(n)
			})
			if got := publicKey(t, dir); got != key {
				t.Errorf("key %s after enrolling again, want the old %s", got, key)
			}
			if err := checkCreds(readTest(t, filepath.Join(dir, credsFile))); err != nil {
				t.Errorf("new credentials: %v", err)
			}
			aside, _ := filepath.Glob(filepath.Join(dir, credsFile+".broken-*"))
			if len(aside) != 1 {
				t.Errorf("broken credentials kept as %q, want one file", aside)
			}
		})
	}
}

// TestWrongEnrollToken starts an agent with an enrollment token the
// broker refuses: it says so once in words an operator can act on, and
// then retries quietly with a growing pause.
func TestWrongEnrollToken(t *testing.T) {
	f := startFleet(t, -1)
	ta := startAgent(t, f.url(), Options{EnrollToken: "not-the-enroll-token"})
	want := "the enrollment token was refused by " + f.url() + ": check --enroll-token / THINFLEET_ENROLL_TOKEN against the server's enroll.token"
	waitFor(t, "the log naming the refused token", func() (bool, string) {
		return ta.log.contains(want), ta.log.String()
	})
	// Every attempt leaves one line with the broker's answer; after three,
	// only the first is louder than debug.
	lines := func(loud bool) int {
		n := 0
		for _, line := range strings.Split(ta.log.String(), "\n") {
			if !strings.Contains(line, "Authorization Violation") {
				continue
			}
			if !loud || strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				n++
			}
		}
		return n
	}
	waitFor(t, "three enrollment attempts", func() (bool, string) {
		return lines(false) >= 3, fmt.Sprint(lines(false))
	})
	if n := lines(true); n != 1 {
		t.Errorf("%d warnings of the refused token in %d attempts, want 1:\n%s", n, lines(false), ta.log)
	}
}

func publicKey(t *testing.T, dir string) string {
	t.Helper()
	kp, err := nkeys.FromSeed(readTest(t, filepath.Join(dir, keyFile)))
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

func readTest(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeTest(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
