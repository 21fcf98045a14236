package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/wire"
)

// Session is the agent's side of the protocol for one device id, without
// the installer and the state folder: its reports (hardware, installed
// version, install statuses), queued and published through JetStream
// until the stream acknowledges each, and its heartbeats. An Agent talks
// through one; thinfleet-sim runs thousands in one process, each on a
// connection of its own, so that what it measures is the agent's own
// protocol code.
//
// Reports may be queued before there is a connection; Deliver sends them.
// A Session's methods may be called from any goroutine.
type Session struct {
	id  string
	log *slog.Logger
	out *outbox
}

// NewSession returns the session of device id; log receives its warnings
// (nil: slog.Default()).
func NewSession(id string, log *slog.Logger) (*Session, error) {
	if err := wire.ValidateID(id); err != nil {
		return nil, fmt.Errorf("agent: id %q: %w", id, err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Session{id: id, log: log, out: newOutbox(log)}, nil
}

// ID is the device id the session reports under.
func (s *Session) ID() string { return s.id }

// ReportHardware queues a hardware report, with the agent's version and
// labels; a newer one replaces it while it waits.
func (s *Session) ReportHardware(hw wire.Hardware, agentVersion string, labels map[string]string) {
	send(s.out, wire.HWReportSubject(s.id), wire.HWReport{Hardware: hw, AgentVersion: agentVersion, Labels: labels}, kindLatest)
}

// ReportVersion queues the installed version's report; a newer one
// replaces it while it waits.
func (s *Session) ReportVersion(version, previous string) {
	send(s.out, wire.VersionInstalledSubject(s.id), wire.VersionInstalled{Version: version, PreviousVersion: previous}, kindLatest)
}

// Status queues one step of an install. Every step is sent, in order;
// progress reports are dropped once the queue is long.
func (s *Session) Status(st wire.Status) {
	st.Detail = validHead(st.Detail, wire.MaxDetail)
	kind := kindStatus
	if st.Progress {
		kind = kindProgress
	}
	send(s.out, wire.StatusSubject(s.id), st, kind)
}

// Heartbeat publishes heartbeat number seq, which tells the server to
// expect the next within interval. It goes over core NATS: a heartbeat is
// worth something only while fresh, so it is not queued.
func (s *Session) Heartbeat(nc *nats.Conn, interval time.Duration, seq int64) error {
	data, _ := json.Marshal(wire.Heartbeat{IntervalMS: interval.Milliseconds(), Seq: seq})
	return nc.Publish(wire.HeartbeatSubject(s.id), data)
}

// Deliver publishes the queued reports over nc, each retried until the
// stream acknowledges it, while nc is connected, until ctx ends. It
// returns when ctx ends; what is still queued stays queued.
func (s *Session) Deliver(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("agent: jetstream: %w", err)
	}
	s.out.run(ctx, js, nc.IsConnected)
	return nil
}

// Flush tries each queued report once, all within d: the last chance to
// send a result before the connection closes.
func (s *Session) Flush(nc *nats.Conn, d time.Duration) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("agent: jetstream: %w", err)
	}
	s.out.flush(js, d)
	return nil
}

// DialOptions configure Dial.
type DialOptions struct {
	// Server is the NATS URL, or several separated by commas.
	Server string
	// ID is the device id the credentials were issued for.
	ID string
	// Credentials is the path of the device's NATS credentials file.
	Credentials string
	// CA is a PEM file of the authority that signed the broker's TLS
	// certificate; empty trusts the system's.
	CA string
	// Log receives the connection's events (nil: slog.Default()).
	Log *slog.Logger
	// OnConnect, if set, runs after every connect and reconnect.
	OnConnect func()
}

// Dial opens a device's broker connection as the agent does (the name,
// inbox prefix, ping and reconnect settings; see connect). Like the
// agent's, it never gives up: it returns after the first attempt,
// connected or not, and the connection keeps trying in the background
// until it is closed. Unlike the Agent,
// it does not enroll again when the broker keeps refusing the
// credentials: it logs each refusal.
func Dial(o DialOptions) (*nats.Conn, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	onConnect := o.OnConnect
	if onConnect == nil {
		onConnect = func() {}
	}
	onAuth := func(err error) { o.Log.Warn("the broker refuses our credentials", "err", err) }
	return connect(Options{Server: o.Server, CA: o.CA}, o.ID, o.Credentials, o.Log, onConnect, onAuth, reconnectDelay)
}

// EnrollOptions configure Enroll.
type EnrollOptions struct {
	// Server is the NATS URL, or several separated by commas.
	Server string
	// Token is the server's enrollment token.
	Token string
	// ID is the device id to enroll.
	ID string
	// Hostname is sent with the request, for the operator.
	Hostname string
	// CA is as in DialOptions.
	CA string
}

// Enroll asks the server once for the user JWT of device o.ID with the
// public key of key, as the agent does at its first start, and returns
// it; jwt.FormatUserConfig(userJWT, seed) makes the credentials file. An
// error says why not: the token refused, the device waiting for approval,
// revoked, or the server taking too many new devices at once.
func Enroll(ctx context.Context, o EnrollOptions, key nkeys.KeyPair) (string, error) {
	if err := wire.ValidateID(o.ID); err != nil {
		return "", fmt.Errorf("agent: id %q: %w", o.ID, err)
	}
	return enroll(ctx, o, key)
}
