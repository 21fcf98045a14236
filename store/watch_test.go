package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// seen is what a test records of one Change.
type seen struct {
	key             string
	initial, loaded bool
}

// watchCase is one of the store's watches, seen through seen.
type watchCase struct {
	name string
	// seed writes a value before the watch begins; nil for a watch of
	// new values only.
	seed func(context.Context, *store.Store) error
	// change writes a value once the watch is loaded.
	change func(context.Context, *store.Store) error
	// key is the change's key.
	key   string
	watch func(context.Context, *store.Store, func(seen) error) error
}

func watchCases() []watchCase {
	return []watchCase{
		{
			name: "devices", key: "new",
			seed: func(ctx context.Context, s *store.Store) error {
				_, err := s.UpdateDevice(ctx, "old", func(*fleet.Device) error { return nil })
				return err
			},
			change: func(ctx context.Context, s *store.Store) error {
				_, err := s.UpdateDevice(ctx, "new", func(d *fleet.Device) error { d.Alive = true; return nil })
				return err
			},
			watch: func(ctx context.Context, s *store.Store, fn func(seen) error) error {
				return s.WatchDevices(ctx, func(c store.Change[fleet.Device]) error {
					if !c.Loaded && c.Value.ID != c.Key {
						return fmt.Errorf("device %q under key %q", c.Value.ID, c.Key)
					}
					return fn(seen{c.Key, c.Initial, c.Loaded})
				})
			},
		},
		{
			name: "enrollments", key: "new",
			seed: func(ctx context.Context, s *store.Store) error {
				return s.PutEnrollment(ctx, fleet.Enrollment{ID: "old", State: fleet.EnrollPending}, 0)
			},
			change: func(ctx context.Context, s *store.Store) error {
				return s.PutEnrollment(ctx, fleet.Enrollment{ID: "new", State: fleet.EnrollPending}, 0)
			},
			watch: func(ctx context.Context, s *store.Store, fn func(seen) error) error {
				return s.WatchEnrollments(ctx, func(c store.Change[fleet.Enrollment]) error {
					return fn(seen{c.Key, c.Initial, c.Loaded})
				})
			},
		},
		{
			name: "catalog", key: "catalog",
			seed: func(ctx context.Context, s *store.Store) error {
				return s.PutCatalog(ctx, fleet.Catalog{Target: "1.0"})
			},
			change: func(ctx context.Context, s *store.Store) error {
				return s.PutCatalog(ctx, fleet.Catalog{Target: "2.0"})
			},
			watch: func(ctx context.Context, s *store.Store, fn func(seen) error) error {
				return s.WatchCatalog(ctx, func(c store.Change[fleet.Catalog]) error {
					return fn(seen{c.Key, c.Initial, c.Loaded})
				})
			},
		},
		{
			name: "events", key: "new",
			change: func(ctx context.Context, s *store.Store) error {
				return s.AppendEvent(ctx, fleet.Event{Device: "new", Event: fleet.EventConnected}, "")
			},
			watch: func(ctx context.Context, s *store.Store, fn func(seen) error) error {
				return s.WatchEvents(ctx, func(c store.Change[fleet.Event]) error {
					if !c.Loaded && c.Value.Seq == 0 {
						return fmt.Errorf("event %+v without its sequence", c.Value)
					}
					return fn(seen{c.Key, c.Initial, c.Loaded})
				})
			},
		},
	}
}

// next waits for the next Change the watch delivers.
func next(t *testing.T, got <-chan seen, errs <-chan error) seen {
	t.Helper()
	select {
	case c := <-got:
		return c
	case err := <-errs:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no change within 10 s")
	}
	return seen{}
}

// TestWatchesLoadThenFollow: every watch delivers what is stored, one
// Loaded mark, then each change.
func TestWatchesLoadThenFollow(t *testing.T) {
	for _, tc := range watchCases() {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := openStore(t)
			if tc.seed != nil {
				if err := tc.seed(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			got, errs := make(chan seen, 10), make(chan error, 1)
			go func() { errs <- tc.watch(ctx, s, func(c seen) error { got <- c; return nil }) }()
			if tc.seed != nil {
				if c := next(t, got, errs); !c.initial || c.loaded {
					t.Errorf("first change = %+v, want the stored value, initial", c)
				}
			}
			if c := next(t, got, errs); !c.loaded || c.key != "" || c.initial {
				t.Errorf("change = %+v, want the Loaded mark", c)
			}
			if err := tc.change(ctx, s); err != nil {
				t.Fatal(err)
			}
			if c := next(t, got, errs); c != (seen{key: tc.key}) {
				t.Errorf("change = %+v, want %q, not initial", c, tc.key)
			}
			cancel()
			if err := <-errs; err != nil {
				t.Errorf("watch ended by its context returned %v, want nil", err)
			}
		})
	}
}

// TestWatchReturnsAfterItsCallback: a watch ended while its callback runs
// returns only once the callback has returned, so a caller that stopped
// watching (the web's live view at Close) knows nothing runs any more.
func TestWatchReturnsAfterItsCallback(t *testing.T) {
	for _, tc := range watchCases() {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := openStore(t)
			loaded, entered, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
			var returned bool // written by the callback before the watch returns
			done := make(chan error, 1)
			go func() {
				done <- tc.watch(ctx, s, func(c seen) error {
					if c.loaded {
						close(loaded)
						return nil
					}
					if c.key != tc.key {
						return nil
					}
					close(entered)
					<-release
					returned = true
					return nil
				})
			}()
			select {
			case <-loaded:
			case err := <-done:
				t.Fatalf("watch ended before it loaded: %v", err)
			}
			if err := tc.change(ctx, s); err != nil {
				t.Fatal(err)
			}
			<-entered
			cancel()
			select {
			case <-done:
				t.Fatal("the watch returned while its callback was still running")
			case <-time.After(200 * time.Millisecond):
			}
			close(release)
			if err := <-done; err != nil {
				t.Errorf("watch ended by its context returned %v, want nil", err)
			}
			if !returned {
				t.Error("the watch returned before its callback did")
			}
		})
	}
}
