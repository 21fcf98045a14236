package broker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/wire"
)

func startTest(t *testing.T) *Broker {
	t.Helper()
	return startWithToken(t, "svc-token-for-tests")
}

func startWithToken(t *testing.T, serviceToken string) *Broker {
	t.Helper()
	b, err := Start(Options{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		ServiceToken: serviceToken, EnrollToken: "enroll", Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

// agentCreds issues device id's credentials as the enrollment service does.
func agentCreds(t *testing.T, b *Broker, id string) (userJWT, seed, userKey string) {
	t.Helper()
	kp, _ := nkeys.CreateUser()
	userKey, _ = kp.PublicKey()
	s, _ := kp.Seed()
	signer, account := b.AgentSigner()
	userJWT, err := AgentJWT(signer, account, id, userKey)
	if err != nil {
		t.Fatal(err)
	}
	return userJWT, string(s), userKey
}

// connectAgent connects as device id, collecting the permission errors.
func connectAgent(t *testing.T, b *Broker, id, userJWT, seed string) (*nats.Conn, chan error) {
	t.Helper()
	errs := make(chan error, 100)
	nc, err := nats.Connect(b.ClientURL(), nats.UserJWTAndSeed(userJWT, seed), nats.Name(id),
		nats.CustomInboxPrefix(wire.AgentInboxPrefix(id)), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatalf("connect as %s: %v", id, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

func expectViolation(t *testing.T, errs chan error, what string) {
	t.Helper()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("%s: got %v, want a permissions violation", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s: the broker let it through", what)
	}
}

func TestRefusedConnections(t *testing.T) {
	b := startTest(t)
	other := startWithToken(t, "another-service-token") // other keys
	otherJWT, otherSeed, _ := agentCreds(t, other, "a1")
	tests := []struct {
		name string
		opts []nats.Option
	}{
		{"anonymous", nil},
		{"password", []nats.Option{nats.UserInfo("agent", "enroll")}},
		{"credentials of another server", []nats.Option{nats.UserJWTAndSeed(otherJWT, otherSeed)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(b.ClientURL(), append(tt.opts, nats.Timeout(5*time.Second))...)
			if err == nil {
				nc.Close()
				t.Fatal("connected; want refused")
			}
			if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("err = %v, want an authorization error", err)
			}
		})
	}
}

// TestAgentIsKeptToItsOwnSubjects uses one agent's credentials to publish
// as another agent and to read another agent's offers: the broker refuses
// both, and lets it do what an agent does.
func TestAgentIsKeptToItsOwnSubjects(t *testing.T) {
	b := startTest(t)
	userJWT, seed, _ := agentCreds(t, b, "a1")
	agent, errs := connectAgent(t, b, "a1", userJWT, seed)

	for _, attack := range []struct {
		what string
		do   func() error
	}{
		{"publish a heartbeat as a2", func() error { return agent.Publish(wire.HeartbeatSubject("a2"), []byte(`{"interval_ms":1000}`)) }},
		{"publish a version as a2", func() error { return agent.Publish(wire.VersionInstalledSubject("a2"), []byte(`{"version":"9"}`)) }},
		{"subscribe to a2's offers", func() error { _, err := agent.SubscribeSync(wire.OfferSubject("a2")); return err }},
		{"subscribe to every offer", func() error { _, err := agent.SubscribeSync(wire.AllOffers); return err }},
		{"subscribe to every inbox", func() error { _, err := agent.SubscribeSync("_INBOX.>"); return err }},
		{"call the JetStream API", func() error { return agent.Publish("$JS.API.STREAM.DELETE.X", nil) }},
		{"send offers", func() error { return agent.Publish(wire.OfferSubject("a1"), []byte("{}")) }},
	} {
		if err := attack.do(); err != nil {
			t.Fatalf("%s: %v", attack.what, err)
		}
		agent.Flush()
		expectViolation(t, errs, attack.what)
	}

	// What an agent does, it can.
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
		t.Errorf("agent JetStream publish on its own subject: %v", err)
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
		t.Errorf("agent did not get its own offer: %v", err)
	}
}

// TestEnrollAccountCanOnlyEnroll signs a user with the key the enrollment
// token derives, as an agent does, and checks it reaches nothing of the
// application account but the enrollment service.
func TestEnrollAccountCanOnlyEnroll(t *testing.T) {
	b := startTest(t)
	svc, err := b.ConnectService("test")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	heard, _ := svc.SubscribeSync(wire.AllHeartbeats)
	if _, err := svc.Subscribe(wire.AllEnrollRequests, func(m *nats.Msg) { m.Respond([]byte("hello " + m.Subject)) }); err != nil {
		t.Fatal(err)
	}
	svc.Flush()

	enrollKey, _ := wire.EnrollAccountKey("enroll")
	user, _ := nkeys.CreateUser()
	userKey, _ := user.PublicKey()
	uc := jwt.NewUserClaims(userKey)
	uc.Name = "a1"
	userJWT, _ := uc.Encode(enrollKey)
	seed, _ := user.Seed()
	nc, err := nats.Connect(b.ClientURL(), nats.UserJWTAndSeed(userJWT, string(seed)))
	if err != nil {
		t.Fatalf("enroll account user: %v", err)
	}
	defer nc.Close()

	msg, err := nc.Request(wire.EnrollSubject("a1"), nil, 5*time.Second)
	if err != nil {
		t.Fatalf("enrollment request: %v", err)
	}
	if string(msg.Data) != "hello "+wire.EnrollSubject("a1") {
		t.Fatalf("enrollment reply %q", msg.Data)
	}
	nc.Publish(wire.HeartbeatSubject("a1"), []byte(`{"interval_ms":1000}`))
	nc.Flush()
	if _, err := heard.NextMsg(300 * time.Millisecond); err == nil {
		t.Error("a heartbeat from the enrollment account reached the application account")
	}

	wrongKey, _ := wire.EnrollAccountKey("not the token")
	forged, _ := uc.Encode(wrongKey)
	if nc, err := nats.Connect(b.ClientURL(), nats.UserJWTAndSeed(forged, string(seed))); err == nil {
		nc.Close()
		t.Error("a user signed with a wrong enrollment token connected")
	}
}

// TestRevokedAgent revokes a connected agent: its connection is closed at
// once and it cannot come back, also after the broker restarts.
func TestRevokedAgent(t *testing.T) {
	dir := t.TempDir()
	start := func() *Broker {
		b, err := Start(Options{DataDir: dir, Listen: "127.0.0.1:0", ServiceToken: "svc-token-for-tests", EnrollToken: "enroll", Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start()
	userJWT, seed, userKey := agentCreds(t, b, "a1")
	goodJWT, goodSeed, _ := agentCreds(t, b, "a2")
	closed := make(chan struct{})
	nc, err := nats.Connect(b.ClientURL(), nats.UserJWTAndSeed(userJWT, seed), nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	good, _ := connectAgent(t, b, "a2", goodJWT, goodSeed)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Revoke(ctx, userKey); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked agent still connected after 5s")
	}
	if !good.IsConnected() {
		t.Error("revoking a1 disconnected a2")
	}
	if nc, err := nats.Connect(b.ClientURL(), nats.UserJWTAndSeed(userJWT, seed)); err == nil {
		nc.Close()
		t.Error("revoked agent connected again")
	}

	b.Shutdown()
	b = start()
	defer b.Shutdown()
	if nc, err := nats.Connect(b.ClientURL(), nats.UserJWTAndSeed(userJWT, seed)); err == nil {
		nc.Close()
		t.Error("revoked agent connected after a restart")
	}
	if nc, err := nats.Connect(b.ClientURL(), nats.UserJWTAndSeed(goodJWT, goodSeed)); err != nil {
		t.Errorf("good agent refused after a restart: %v", err)
	} else {
		nc.Close()
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
