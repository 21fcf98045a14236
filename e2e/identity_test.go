package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/wire"
)

// thinfleet runs the thinfleet binary with the admin token set.
func thinfleet(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "thinfleet"), args...)
	cmd.Env = append(os.Environ(), "THINFLEET_ADMIN_TOKEN="+adminToken)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("thinfleet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestApprovalAndRevocation runs the server with --approve-devices: a new
// agent waits until an operator approves it; its credentials are a
// standard NATS credentials file that the broker keeps to its own
// subjects; revoking it disconnects it at once and keeps it out.
func TestApprovalAndRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	root := t.TempDir()
	srv := startServer(t, filepath.Join(root, "data"), filepath.Join(root, "updates"), "127.0.0.1:0", "127.0.0.1:0", "--approve-devices")
	state := filepath.Join(root, "state")
	startAgent(t, "kiosk-7", srv.natsURL, state)
	startAgent(t, "kiosk-8", srv.natsURL, filepath.Join(root, "state-8"))

	waitFor(t, 30*time.Second, "kiosk-7 pending", func() (bool, string) {
		out := thinfleet(t, "devices", "--api", srv.httpURL, "list")
		return strings.Contains(out, "kiosk-7") && strings.Contains(out, "pending"), out
	})
	if len(srv.devices(t)) != 0 {
		t.Fatalf("a pending agent reached the fleet: %s", showDevices(srv.devices(t)))
	}
	if _, err := os.Stat(filepath.Join(state, "agent.creds")); err == nil {
		t.Fatal("a pending agent has credentials")
	}

	for _, id := range []string{"kiosk-7", "kiosk-8"} {
		if out := thinfleet(t, "devices", "--api", srv.httpURL, "approve", id); !strings.Contains(out, "approved") {
			t.Fatalf("approve: %s", out)
		}
	}
	waitFor(t, 60*time.Second, "approved agents alive", allOn(srv, t, []string{"kiosk-7", "kiosk-8"}, ""))

	// The credentials work in any NATS client, for kiosk-7's subjects only.
	creds := filepath.Join(state, "agent.creds")
	errs := make(chan error, 10)
	nc, err := nats.Connect(srv.natsURL, nats.UserCredentials(creds), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("a plain NATS client with agent.creds: %v", err)
	}
	defer nc.Close()
	nc.Publish(wire.VersionInstalledSubject("kiosk-8"), []byte(`{"version":"6.6.6"}`))
	nc.SubscribeSync(wire.OfferSubject("kiosk-8"))
	nc.Flush()
	for _, what := range []string{"publish as kiosk-8", "read kiosk-8's offers"} {
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("%s: %v, want a permissions violation", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the broker let it through", what)
		}
	}
	nc.Close()

	out := thinfleet(t, "devices", "--api", srv.httpURL, "revoke", "kiosk-7")
	if !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %s", out)
	}
	took := waitFor(t, 5*time.Second, "revoked kiosk-7 notAlive", func() (bool, string) {
		for _, d := range srv.devices(t) {
			if d.ID == "kiosk-7" {
				return !d.Alive, showDevices([]device{d})
			}
		}
		return false, "missing"
	})
	t.Logf("MEASURED: revoke to notAlive: %s", took.Round(time.Millisecond))
	if nc, err := nats.Connect(srv.natsURL, nats.UserCredentials(creds)); err == nil {
		nc.Close()
		t.Error("revoked credentials still connect")
	}
	// It stays out: three heartbeats later it is still notAlive, and kiosk-8
	// is unaffected.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, d := range srv.devices(t) {
			if d.ID == "kiosk-7" && d.Alive {
				t.Fatal("revoked kiosk-7 came back")
			}
			if d.ID == "kiosk-8" && !d.Alive {
				t.Fatal("revoking kiosk-7 took kiosk-8 down")
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}
