package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	tests := []struct {
		b       Backoff
		attempt int
		want    time.Duration
	}{
		{Backoff{Pause: time.Second}, 1, time.Second},
		{Backoff{Pause: time.Second}, 7, time.Second},
		{Backoff{Pause: time.Second, Max: 10 * time.Second}, 1, time.Second},
		{Backoff{Pause: time.Second, Max: 10 * time.Second}, 3, 3 * time.Second},
		{Backoff{Pause: time.Second, Max: 10 * time.Second}, 30, 10 * time.Second},
		{Backoff{Pause: 200 * time.Millisecond, Max: time.Second}, 4, 800 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := tt.b.Delay(tt.attempt); got != tt.want {
			t.Errorf("%+v.Delay(%d) = %v, want %v", tt.b, tt.attempt, got, tt.want)
		}
	}
}

func TestDo(t *testing.T) {
	errBusy := errors.New("busy")
	errBad := errors.New("bad")
	fast := Backoff{Pause: time.Millisecond}
	tests := []struct {
		name      string
		b         Backoff
		failFirst int   // attempts that fail with errBusy
		then      error // what the next attempt returns
		wantCalls int
		wantErr   error
	}{
		{"succeeds at once", fast, 0, nil, 1, nil},
		{"succeeds on the third", fast, 2, nil, 3, nil},
		{"gives up after Attempts", Backoff{Pause: time.Millisecond, Attempts: 5}, 99, nil, 5, errBusy},
		{"a final error ends it", fast, 1, Final(errBad), 2, errBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := Do(context.Background(), tt.b, func(attempt int) error {
				calls++
				if attempt != calls {
					t.Errorf("attempt %d on call %d", attempt, calls)
				}
				if calls <= tt.failFirst {
					return errBusy
				}
				return tt.then
			})
			if calls != tt.wantCalls || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("got %d calls, err %v; want %d calls, err %v", calls, err, tt.wantCalls, tt.wantErr)
			}
			var final *finalError
			if errors.As(err, &final) {
				t.Errorf("Do returned the Final wrapper %v; want the error itself", err)
			}
		})
	}
}

func TestDoStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := Do(ctx, Backoff{Pause: time.Hour}, func(int) error { calls++; return nil })
	if calls != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("ended context: %d calls, err %v; want none and context.Canceled", calls, err)
	}

	// A context that ends during an hour's pause ends Do at once, with the
	// operation's error.
	ctx, cancel = context.WithCancel(context.Background())
	errBusy := errors.New("busy")
	done := make(chan error, 1)
	failed := make(chan struct{})
	go func() {
		done <- Do(ctx, Backoff{Pause: time.Hour}, func(attempt int) error {
			if attempt == 1 {
				close(failed)
			}
			return errBusy
		})
	}()
	<-failed
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, errBusy) {
			t.Errorf("Do ended by its context returned %v; want the last error, %v", err, errBusy)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Do still pauses 10 s after its context ended")
	}
}
