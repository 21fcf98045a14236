// Package retry runs an operation again, after a pause, while it fails
// for a reason that passes: a cluster electing a stream leader, a broker
// connection coming back. It imports only the standard library, so the
// agent may use it as well as the server.
package retry

import (
	"context"
	"errors"
	"time"
)

// Backoff says how long to pause after a failed attempt and how many
// attempts to make.
type Backoff struct {
	// Pause is the pause after the first failure; the one after the
	// n-th is n times as long, up to Max.
	Pause time.Duration
	// Max caps the pause. Zero, or less than Pause: every pause is Pause.
	Max time.Duration
	// Attempts is how many attempts to make at most; zero for no limit.
	Attempts int
}

// Delay is the pause after the attempt-th failure (attempt counts from 1).
func (b Backoff) Delay(attempt int) time.Duration {
	if b.Max <= b.Pause {
		return b.Pause
	}
	return min(time.Duration(max(attempt, 1))*b.Pause, b.Max)
}

// Final marks an error that another attempt will not cure: Do returns it
// (unwrapped) at once.
func Final(err error) error {
	if err == nil {
		return nil
	}
	return &finalError{err}
}

type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// Do calls op, with the attempt's number counting from 1, until it
// returns nil, returns a Final error, has been called b.Attempts times or
// ctx ends, pausing b.Delay(attempt) after each failure. It returns nil
// on success and otherwise op's last error (a Final one unwrapped); if
// ctx ends before op has failed even once, ctx's error. op logs its own
// failures: it knows what it was doing.
func Do(ctx context.Context, b Backoff, op func(attempt int) error) error {
	err := ctx.Err()
	for attempt := 1; err == nil || ctx.Err() == nil; attempt++ {
		err = op(attempt)
		var final *finalError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &final):
			return final.err
		case b.Attempts > 0 && attempt >= b.Attempts:
			return err
		}
		if !Sleep(ctx, b.Delay(attempt)) {
			return err
		}
	}
	return err
}

// Sleep pauses for d, or until ctx ends; it reports whether the pause
// ran its course.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
