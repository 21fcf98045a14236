package enroll_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/broker/brokertest"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/retry"
	"github.com/thinfleet/thinfleet/wire"
)

const token = "enroll-test-token"

// ask sends an enrollment request for id with user's public key, the way
// an agent does: as a user of the enrollment account it signs itself.
// Like an agent, it asks again when no answer came in time (a machine
// loaded by other tests), a few times.
func ask(t *testing.T, s *brokertest.Server, id string, user nkeys.KeyPair, payload []byte) wire.EnrollResponse {
	t.Helper()
	var resp wire.EnrollResponse
	err := retry.Do(context.Background(), retry.Backoff{Pause: 100 * time.Millisecond, Max: time.Second, Attempts: 4}, func(int) error {
		var err error
		resp, err = tryAsk(s, id, user, payload)
		if err != nil && !errors.Is(err, nats.ErrTimeout) {
			return retry.Final(err)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// tryAsk is ask that returns its error: an agent asks again after one.
func tryAsk(s *brokertest.Server, id string, user nkeys.KeyPair, payload []byte) (wire.EnrollResponse, error) {
	account, _ := wire.EnrollAccountKey(token)
	userPub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.Name = id
	enrollJWT, err := uc.Encode(account)
	if err != nil {
		return wire.EnrollResponse{}, err
	}
	seed, _ := user.Seed()
	nc, err := nats.Connect(s.URL, nats.UserJWTAndSeed(enrollJWT, string(seed)))
	if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("connect to enroll: %w", err)
	}
	defer nc.Close()
	if payload == nil {
		payload, _ = json.Marshal(wire.EnrollRequest{PublicKey: userPub, Hostname: "host-" + id})
	}
	msg, err := nc.Request(wire.EnrollSubject(id), payload, 5*time.Second)
	if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("enrollment request: %w", err)
	}
	var resp wire.EnrollResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("answer %q: %w", msg.Data, err)
	}
	return resp, nil
}

func newUser(t *testing.T) nkeys.KeyPair {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// connects reports whether the credentials in resp let user in.
func connects(s *brokertest.Server, resp wire.EnrollResponse, user nkeys.KeyPair) bool {
	seed, _ := user.Seed()
	nc, err := nats.Connect(s.URL, nats.UserJWTAndSeed(resp.JWT, string(seed)))
	if err != nil {
		return false
	}
	nc.Close()
	return true
}

func TestFirstKeyKeepsTheID(t *testing.T) {
	s := brokertest.Start(t, brokertest.Options{EnrollToken: token})
	a, b := newUser(t), newUser(t)

	first := ask(t, s, "kiosk-1", a, nil)
	if first.Status != wire.EnrollApproved || !connects(s, first, a) {
		t.Fatalf("first key: %+v, want approved credentials that connect", first)
	}
	again := ask(t, s, "kiosk-1", a, nil)
	if again.Status != wire.EnrollApproved {
		t.Errorf("same key again: %+v, want approved (an agent that lost its creds file)", again)
	}
	squat := ask(t, s, "kiosk-1", b, nil)
	if squat.Status != wire.EnrollRefused || squat.JWT != "" {
		t.Errorf("another key for kiosk-1: %+v, want refused without credentials", squat)
	}
	// The credentials name their id: b's do not exist, a's are kiosk-1's.
	claims, err := jwt.DecodeUserClaims(first.JWT)
	if err != nil || claims.Name != "kiosk-1" {
		t.Errorf("credentials name %q (%v), want kiosk-1", claims.Name, err)
	}
}

func TestApprovalAndRevocation(t *testing.T) {
	s := brokertest.Start(t, brokertest.Options{EnrollToken: token, Approve: true})
	ctx := context.Background()
	user := newUser(t)

	if resp := ask(t, s, "kiosk-2", user, nil); resp.Status != wire.EnrollPending || resp.JWT != "" {
		t.Fatalf("new device with approval on: %+v, want pending without credentials", resp)
	}
	if resp := ask(t, s, "kiosk-2", user, nil); resp.Status != wire.EnrollPending {
		t.Fatalf("asking again before approval: %+v, want pending", resp)
	}
	if _, err := s.Store.SetEnrollState(ctx, "kiosk-2", fleet.EnrollApproved); err != nil {
		t.Fatal(err)
	}
	resp := ask(t, s, "kiosk-2", user, nil)
	if resp.Status != wire.EnrollApproved || !connects(s, resp, user) {
		t.Fatalf("after approval: %+v, want credentials that connect", resp)
	}

	if _, err := s.Store.SetEnrollState(ctx, "kiosk-2", fleet.EnrollRevoked); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 10*time.Second, "revoked credentials refused", func() error {
		if connects(s, resp, user) {
			return errors.New("they still connect")
		}
		return nil
	})
	if again := ask(t, s, "kiosk-2", user, nil); again.Status != wire.EnrollRefused {
		t.Errorf("a revoked device asking again: %+v, want refused", again)
	}
	if _, err := s.Store.SetEnrollState(ctx, "kiosk-2", fleet.EnrollApproved); err == nil {
		t.Error("approving a revoked device worked; revocation should be final")
	}
}

func TestBadRequests(t *testing.T) {
	s := brokertest.Start(t, brokertest.Options{EnrollToken: token})
	user := newUser(t)
	for _, tt := range []struct {
		name    string
		payload []byte
	}{
		{"not json", []byte("\x00garbage")},
		{"no key", []byte(`{"hostname":"x"}`)},
		{"an account key", []byte(`{"public_key":"ADXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}`)},
	} {
		if resp := ask(t, s, "kiosk-3", user, tt.payload); resp.Status != wire.EnrollRefused || resp.JWT != "" {
			t.Errorf("%s: %+v, want refused", tt.name, resp)
		}
	}
	// Nothing was recorded for the id: a good request still gets it.
	if resp := ask(t, s, "kiosk-3", user, nil); resp.Status != wire.EnrollApproved {
		t.Errorf("good request after bad ones: %+v, want approved", resp)
	}
}
