package broker

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/wire"
)

func startTest(t *testing.T) *Broker {
	t.Helper()
	b, err := Start(Options{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		ServiceToken: "svc", EnrollToken: "enroll", Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

func TestConnections(t *testing.T) {
	b := startTest(t)
	tests := []struct {
		name    string
		opts    []nats.Option
		wantErr bool
	}{
		{"anonymous", nil, true},
		{"wrong enroll token", []nats.Option{nats.UserInfo(AgentUser, "nope")}, true},
		{"agent", []nats.Option{nats.UserInfo(AgentUser, "enroll")}, false},
		{"service over tcp", []nats.Option{nats.UserInfo(ServiceUser, "svc")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(b.ClientURL(), append(tt.opts, nats.Timeout(5*time.Second))...)
			if nc != nil {
				nc.Close()
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("connect: err = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// TestAgentPermissions checks that the broker, not the services, keeps an
// agent to the thinfleet subjects.
func TestAgentPermissions(t *testing.T) {
	b := startTest(t)
	errs := make(chan error, 10)
	agent, err := nats.Connect(b.ClientURL(), nats.UserInfo(AgentUser, "enroll"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	if _, err := agent.SubscribeSync("$JS.API.>"); err != nil {
		t.Fatal(err)
	}
	if err := agent.Publish("$JS.API.STREAM.DELETE.X", nil); err != nil {
		t.Fatal(err)
	}
	agent.Flush()
	deadline := time.After(5 * time.Second)
	for seen := 0; seen < 2; seen++ {
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("got %v, want a permissions violation", err)
			}
		case <-deadline:
			t.Fatalf("saw %d of 2 permission violations", seen)
		}
	}

	// What an agent may do, it can: report through JetStream and hear offers.
	svc, err := b.ConnectService("test")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	js, _ := jetstream.New(svc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: wire.AgentStreamSubjects}); err != nil {
		t.Fatal(err)
	}
	ajs, _ := jetstream.New(agent)
	if _, err := ajs.Publish(ctx, wire.VersionInstalledSubject("a1"), []byte(`{"version":"1.0"}`)); err != nil {
		t.Errorf("agent JetStream publish: %v", err)
	}
	sub, err := agent.SubscribeSync(wire.OfferSubject("a1"))
	if err != nil {
		t.Fatal(err)
	}
	agent.Flush()
	if err := svc.Publish(wire.OfferSubject("a1"), []byte("offer")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Errorf("agent did not get its offer: %v", err)
	}
}

func TestSplitListen(t *testing.T) {
	tests := []struct {
		addr     string
		wantHost string
		wantPort int
		wantErr  bool
	}{
		{":4222", "0.0.0.0", 4222, false},
		{"127.0.0.1:0", "127.0.0.1", -1, false},
		{"", "0.0.0.0", 4222, false},
		{"nope", "", 0, true},
		{"h:99999", "", 0, true},
	}
	for _, tt := range tests {
		host, port, err := splitListen(tt.addr)
		if (err != nil) != tt.wantErr || host != tt.wantHost || port != tt.wantPort {
			t.Errorf("splitListen(%q) = %q, %d, %v; want %q, %d, err %v", tt.addr, host, port, err, tt.wantHost, tt.wantPort, tt.wantErr)
		}
	}
}
