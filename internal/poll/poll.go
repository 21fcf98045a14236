// Package poll waits, in tests, for a condition that the code under test
// brings about on its own time: poll it with a deadline rather than sleep
// and hope.
package poll

import (
	"testing"
	"time"
)

// Every is how often Eventually asks its condition.
const Every = 20 * time.Millisecond

// Eventually asks cond every 20 ms until it returns nil, and fails the
// test if that takes longer than timeout, with what (what was awaited;
// may be empty) and cond's last error (what it saw instead).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if what != "" {
				t.Fatalf("%s: not within %v: %v", what, timeout, err)
			}
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(Every)
	}
}
