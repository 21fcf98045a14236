package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// serviceConn opens a connection with a service's full rights on the
// server's broker, for the test to look at the state an attack aims at.
func serviceConn(t *testing.T, srv *server) *nats.Conn {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(srv.data, "service.token"))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := broker.ServiceCredentials(strings.TrimSpace(string(token)), "e2e-inspector", false)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.natsURL, creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// bucketState is every key of the server's buckets with its revision.
func bucketState(t *testing.T, js jetstream.JetStream, buckets ...string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	state := map[string]uint64{}
	for _, b := range buckets {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			e, err := kv.Get(ctx, k)
			if err != nil {
				t.Fatalf("%s/%s: %v", b, k, err)
			}
			state[b+"/"+k] = e.Revision()
		}
	}
	return state
}

// TestStolenAgentCredsStayInTheirLane takes one enrolled agent's
// credentials file, as a thief would, and publishes on the subjects the
// broker lets that agent use, with reply subjects naming everything else:
// another device's subjects, every key of every bucket, keys not yet
// written, the JetStream API and the system account. Whatever answers a
// publish must not write there: the catalog, the enrollments and the
// other device's record stay as they were, nothing arrives on the other
// device's subjects, the agent stream keeps its messages, a new device
// still enrolls and revoking the thief still locks it out.
func TestStolenAgentCredsStayInTheirLane(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	root := t.TempDir()
	updates := filepath.Join(root, "updates")
	srv := startServer(t, filepath.Join(root, "data"), updates, "127.0.0.1:0", "127.0.0.1:0")
	writeZip(t, updates, "update-1.0.zip", map[string]string{"name": "Update 1.0", "version": "1.0", "command": "true"}, nil)
	startAgent(t, "victim", srv.natsURL, filepath.Join(root, "state-victim"))
	startAgent(t, "mallory", srv.natsURL, filepath.Join(root, "state-mallory"))
	waitFor(t, 60*time.Second, "both agents on 1.0", allOn(srv, t, []string{"victim", "mallory"}, "1.0"))

	inspector := serviceConn(t, srv)
	js, err := jetstream.New(inspector)
	if err != nil {
		t.Fatal(err)
	}
	watched := []string{store.CatalogBucket, store.EnrollmentsBucket}
	before := bucketState(t, js, watched...)
	victimBefore := deviceByID(srv.devices(t), "victim")

	// Anything that lands on the victim's subjects, its history or a key
	// of a bucket is what the attack is after.
	landed, err := inspector.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	if err := inspector.Flush(); err != nil {
		t.Fatal(err)
	}

	targets := []string{
		wire.HWReportSubject("victim"), wire.VersionInstalledSubject("victim"),
		wire.StatusSubject("victim"), wire.HeartbeatSubject("victim"), wire.OfferSubject("victim"),
		"thinfleet.history.victim",
		"$KV." + store.DevicesBucket + ".victim", "$KV." + store.DevicesBucket + ".newcomer",
		"$KV." + store.EnrollmentsBucket + ".newcomer", "$KV." + store.EnrollmentsBucket + ".mallory",
		"$JS.API.STREAM.PURGE." + store.AgentStream, "$JS.API.STREAM.DELETE." + store.HistoryStream,
		"$JS.API.CONSUMER.DELETE." + store.AgentStream + ".history",
		"$SYS.REQ.SERVER.PING", "$SYS.REQ.ACCOUNT.PING.CONNZ",
	}
	for k := range before {
		bucket, key, _ := strings.Cut(k, "/")
		targets = append(targets, "$KV."+bucket+"."+key)
	}

	creds := filepath.Join(root, "state-mallory", "agent.creds")
	thief, err := nats.Connect(srv.natsURL, nats.UserCredentials(creds), nats.Name("mallory"),
		nats.CustomInboxPrefix(wire.AgentInboxPrefix("mallory")), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect with the stolen creds: %v", err)
	}
	defer thief.Close()
	reports := map[string][]byte{
		wire.HWReportSubject("mallory"):         mustJSON(t, wire.HWReport{Hardware: wire.Hardware{Hostname: "mallory"}}),
		wire.VersionInstalledSubject("mallory"): mustJSON(t, wire.VersionInstalled{Version: "1.0"}),
		wire.StatusSubject("mallory"):           mustJSON(t, wire.Status{Version: "1.0", State: wire.StateInstalled}),
		wire.HeartbeatSubject("mallory"):        mustJSON(t, wire.Heartbeat{IntervalMS: 1000}),
	}
	for _, target := range targets {
		for subject, data := range reports {
			if err := thief.PublishRequest(subject, target, data); err != nil {
				t.Fatalf("publish %s reply %s: %v", subject, target, err)
			}
		}
	}
	// The thief's own acknowledged report comes after every hostile one:
	// once it is in, whatever the hostile ones could cause has happened.
	thiefJS, _ := jetstream.New(thief)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := thiefJS.Publish(ctx, wire.VersionInstalledSubject("mallory"), reports[wire.VersionInstalledSubject("mallory")]); err != nil {
		t.Fatalf("the thief's own report is no longer acknowledged: %v", err)
	}
	if err := inspector.Flush(); err != nil {
		t.Fatal(err)
	}

	for {
		m, err := landed.NextMsg(200 * time.Millisecond)
		if err != nil {
			break
		}
		// What answers a publish is an acknowledgement naming the
		// stream, or an error: neither belongs on a target.
		answer := strings.Contains(string(m.Data), `"stream"`) || strings.Contains(string(m.Data), `"error"`)
		for _, target := range targets {
			if m.Subject == target && answer {
				t.Errorf("a publish with the stolen creds wrote %q on %s", truncate(m.Data, 80), m.Subject)
			}
		}
	}
	if after := bucketState(t, js, watched...); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("buckets changed under attack:\nbefore %v\nafter  %v", before, after)
	}
	victimAfter := deviceByID(srv.devices(t), "victim")
	if victimAfter.Version != victimBefore.Version || victimAfter.Hardware != victimBefore.Hardware || !victimAfter.Alive {
		t.Errorf("the victim's record changed: before %+v, after %+v", victimBefore, victimAfter)
	}
	info, err := js.Stream(ctx, store.AgentStream)
	if err != nil {
		t.Fatalf("agent stream: %v", err)
	}
	if info.CachedInfo().State.Msgs == 0 {
		t.Error("the agent stream was purged")
	}
	if _, err := js.Stream(ctx, store.HistoryStream); err != nil {
		t.Errorf("history stream: %v", err)
	}
	var ups []struct {
		Version string `json:"version"`
	}
	if err := srv.get("/api/v1/updates", &ups); err != nil || len(ups) != 1 {
		t.Errorf("the catalog after the attack: %v %v, want the one release", ups, err)
	}

	startAgent(t, "newcomer", srv.natsURL, filepath.Join(root, "state-newcomer"))
	waitFor(t, 60*time.Second, "a new device enrolls after the attack", allOn(srv, t, []string{"newcomer"}, "1.0"))

	if out := thinfleet(t, "devices", "--api", srv.httpURL, "revoke", "mallory"); !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %s", out)
	}
	waitFor(t, 10*time.Second, "the revoked thief is out", func() (bool, string) {
		nc, err := nats.Connect(srv.natsURL, nats.UserCredentials(creds), nats.NoReconnect())
		if err != nil {
			return true, ""
		}
		nc.Close()
		return false, "the stolen creds still connect"
	})
}

func deviceByID(ds []device, id string) device {
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	return device{}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
