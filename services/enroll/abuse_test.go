package enroll_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/broker/brokertest"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// TestNewDevicesRateLimited enrolls new ids as fast as a client can ask,
// as whoever holds the enrollment token could: past the burst, new ids
// are refused with a reason and nothing is recorded for them, while a
// device already enrolled still gets its credentials.
func TestNewDevicesRateLimited(t *testing.T) {
	s := brokertest.Start(t, brokertest.Options{EnrollToken: token, EnrollRate: 1, EnrollBurst: 5})
	known := newUser(t)
	if r := ask(t, s, "known", known, nil); r.Status != wire.EnrollApproved {
		t.Fatalf("first device: %+v", r)
	}
	approved, refused := 0, 0
	start := time.Now()
	const asked = 30
	for i := range asked {
		r := ask(t, s, fmt.Sprintf("flood-%d", i), newUser(t), nil)
		switch {
		case r.Status == wire.EnrollApproved:
			approved++
		case r.Status == wire.EnrollRefused && strings.Contains(r.Reason, "too many new devices"):
			refused++
		default:
			t.Fatalf("flood-%d: %+v", i, r)
		}
	}
	took := time.Since(start)
	t.Logf("MEASURED: %d new enrollments asked in %s: %d accepted, %d refused (rate 1/s, burst 5)", asked, took.Round(time.Millisecond), approved, refused)
	if max := 5 + int(took.Seconds()) + 1; approved > max {
		t.Errorf("%d new devices enrolled, want at most %d at this rate", approved, max)
	}
	ens, err := s.Store.Enrollments(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ens) != approved+1 {
		t.Errorf("%d enrollments recorded, want %d: a refused device must leave nothing behind", len(ens), approved+1)
	}
	if r := ask(t, s, "known", known, nil); r.Status != wire.EnrollApproved {
		t.Errorf("a known device during the flood: %+v", r)
	}
}

// TestPendingBounded keeps new devices pending: beyond the bound a new id
// is refused, and once an operator deletes one there is room again.
func TestPendingBounded(t *testing.T) {
	s := brokertest.Start(t, brokertest.Options{EnrollToken: token, Approve: true, MaxPending: 3})
	for i := range 3 {
		if r := ask(t, s, fmt.Sprintf("wait-%d", i), newUser(t), nil); r.Status != wire.EnrollPending {
			t.Fatalf("wait-%d: %+v", i, r)
		}
	}
	poll.Eventually(t, 15*time.Second, "the fourth refused", func() error {
		r := ask(t, s, "wait-3", newUser(t), nil)
		if r.Status != wire.EnrollRefused || !strings.Contains(r.Reason, "waiting for approval") {
			return fmt.Errorf("%+v", r)
		}
		return nil
	})
	if err := s.Store.DeleteDevice(context.Background(), "wait-0", "test"); err != nil {
		t.Fatal(err)
	}
	again := newUser(t)
	poll.Eventually(t, 15*time.Second, "room again after a deletion", func() error {
		r, err := tryAsk(s, "wait-3", again, nil)
		if err == nil && r.Status != wire.EnrollPending {
			err = fmt.Errorf("%+v", r)
		}
		return err
	})
}

// TestDeleteFreesTheID deletes an enrolled device: its credentials stop
// working, its records go, the history says who deleted it, and the id
// can enroll again with a new key (a device that lost its key).
func TestDeleteFreesTheID(t *testing.T) {
	s := brokertest.Start(t, brokertest.Options{EnrollToken: token})
	old := newUser(t)
	first := ask(t, s, "kiosk-9", old, nil)
	if first.Status != wire.EnrollApproved {
		t.Fatalf("%+v", first)
	}
	ctx := context.Background()
	if _, err := s.Store.UpdateDevice(ctx, "kiosk-9", func(d *fleet.Device) error { d.Hostname = "kiosk"; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := ask(t, s, "kiosk-9", newUser(t), nil); r.Status != wire.EnrollRefused {
		t.Fatalf("a second key before the deletion: %+v", r)
	}
	if err := s.Store.DeleteDevice(ctx, "kiosk-9", "an operator"); err != nil {
		t.Fatal(err)
	}
	if err := s.Store.DeleteDevice(ctx, "never-was", "an operator"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting an unknown device: %v, want ErrNotFound", err)
	}
	poll.Eventually(t, 15*time.Second, "the enrollment removed", func() error {
		if _, _, err := s.Store.Enrollment(ctx, "kiosk-9"); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("enrollment still there: %v", err)
		}
		return nil
	})
	if _, err := s.Store.Device(ctx, "kiosk-9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device record after the deletion: %v", err)
	}
	if connects(s, first, old) {
		t.Error("the deleted device's credentials still connect")
	}
	evs, err := s.Store.Events(ctx, fleet.EventFilter{Device: "kiosk-9"})
	if err != nil || len(evs) == 0 || evs[0].Event != fleet.EventDeleted || !strings.Contains(evs[0].Detail, "an operator") {
		t.Errorf("history after the deletion: %+v %v", evs, err)
	}
	fresh := newUser(t)
	poll.Eventually(t, 15*time.Second, "a new key after the deletion", func() error {
		r, err := tryAsk(s, "kiosk-9", fresh, nil)
		if err == nil && (r.Status != wire.EnrollApproved || !connects(s, r, fresh)) {
			err = fmt.Errorf("%+v", r)
		}
		return err
	})
}

// TestHeldEnrollConnectionsClosed holds enrollment connections open, as
// an attacker with the token would to use up the account's limit: they
// are closed once open longer than an enrollment takes.
func TestHeldEnrollConnectionsClosed(t *testing.T) {
	s := brokertest.Start(t, brokertest.Options{EnrollToken: token, HoldLimit: 2 * time.Second})
	account, _ := wire.EnrollAccountKey(token)
	var held []*nats.Conn
	for i := range 5 {
		user := newUser(t)
		pub, _ := user.PublicKey()
		uc := jwt.NewUserClaims(pub)
		uc.Name = fmt.Sprintf("hold-%d", i)
		j, _ := uc.Encode(account)
		seed, _ := user.Seed()
		nc, err := nats.Connect(s.URL, nats.UserJWTAndSeed(j, string(seed)), nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		held = append(held, nc)
	}
	poll.Eventually(t, 30*time.Second, "the held enrollment connections closed", func() error {
		open := 0
		for _, nc := range held {
			if !nc.IsClosed() {
				open++
			}
		}
		if open > 0 {
			return fmt.Errorf("%d of %d still open", open, len(held))
		}
		return nil
	})
	if r := ask(t, s, "real-agent", newUser(t), nil); r.Status != wire.EnrollApproved {
		t.Errorf("a real agent after the held connections: %+v", r)
	}
}

// TestDeleteKeepsRevocation deletes a revoked device: its record goes,
// but the revocation stays, so the same key cannot enroll again.
func TestDeleteKeepsRevocation(t *testing.T) {
	s := brokertest.Start(t, brokertest.Options{EnrollToken: token})
	thief := newUser(t)
	if r := ask(t, s, "stolen-1", thief, nil); r.Status != wire.EnrollApproved {
		t.Fatalf("%+v", r)
	}
	ctx := context.Background()
	if _, err := s.Store.SetEnrollState(ctx, "stolen-1", fleet.EnrollRevoked); err != nil {
		t.Fatal(err)
	}
	if err := s.Store.DeleteDevice(ctx, "stolen-1", "an operator"); err != nil {
		t.Fatal(err)
	}
	if en, _, err := s.Store.Enrollment(ctx, "stolen-1"); err != nil || en.State != fleet.EnrollRevoked {
		t.Fatalf("enrollment after deleting a revoked device: %+v %v, want still revoked", en, err)
	}
	if r := ask(t, s, "stolen-1", thief, nil); r.Status != wire.EnrollRefused {
		t.Errorf("the revoked key after the deletion: %+v, want refused", r)
	}
}
