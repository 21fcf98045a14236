package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/services/presence"
	"github.com/thinfleet/thinfleet/wire"
)

// TestLastSeenFromPresence runs presence beside the web server: a device
// that keeps heartbeating has its record written once, when it turned
// alive, yet the API shows its latest heartbeat, from presence's memory.
func TestLastSeenFromPresence(t *testing.T) {
	b, _, st := startStore(t)
	a := &apiTest{store: st, updates: t.TempDir()}
	s, err := New(Options{Log: slog.New(slog.DiscardHandler), Store: st, UpdatesDir: a.updates, AdminToken: testToken, PublicURL: "http://fleet.example:8080/"})
	if err != nil {
		t.Fatal(err)
	}
	a.srv = httptest.NewServer(s.Handler())
	defer a.srv.Close()
	pc, err := b.ConnectService("presence")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	p, err := presence.New(presence.Options{Log: slog.New(slog.DiscardHandler), Store: a.store, Conn: pc, Account: b.AppAccountKey(), SeenEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	agent, err := b.ConnectService("agent-stand-in")
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	beat := func() time.Time {
		sent := time.Now()
		if err := agent.Publish(wire.HeartbeatSubject("seen-1"), []byte(`{"interval_ms":60000}`)); err != nil {
			t.Fatal(err)
		}
		if err := agent.Flush(); err != nil {
			t.Fatal(err)
		}
		return sent
	}
	apiDevice := func() (fleet.Device, error) {
		resp, body := a.do(t, "/api/v1/devices/seen-1", nil)
		var d fleet.Device
		if resp.StatusCode != http.StatusOK {
			return d, fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return d, json.Unmarshal([]byte(body), &d)
	}
	var flipped time.Time
	var last time.Time
	poll.Eventually(t, 10*time.Second, "recorded alive", func() error {
		// Within the device's heartbeat rate: more would be dropped.
		if time.Since(last) > 200*time.Millisecond {
			last = beat()
		}
		d, err := a.store.Device(context.Background(), "seen-1")
		if err != nil || !d.Alive {
			return fmt.Errorf("not recorded alive yet: %v", err)
		}
		flipped = d.LastSeen
		return nil
	})
	for range 3 {
		time.Sleep(200 * time.Millisecond) // the device's heartbeat rate
		sent := beat()
		poll.Eventually(t, 10*time.Second, "last_seen shown", func() error {
			d, err := apiDevice()
			if err != nil {
				return err
			}
			if d.LastSeen.Before(sent.Truncate(time.Millisecond)) {
				return fmt.Errorf("API last_seen %v, heartbeat sent at %v", d.LastSeen, sent)
			}
			return nil
		})
		var list []fleet.Device
		if resp, body := a.do(t, "/api/v1/devices", nil); resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0].LastSeen.Before(sent.Truncate(time.Millisecond)) {
			t.Errorf("device list: %s", body)
		}
	}
	if d, err := a.store.Device(context.Background(), "seen-1"); err != nil || !d.LastSeen.Equal(flipped) {
		t.Errorf("record written after the flip: %+v, %v", d, err)
	}
}
