// Package broker runs thinfleet's embedded NATS server with JetStream.
//
// It is the only package that knows the server is embedded: services get a
// *nats.Conn from ConnectService and see nothing else, so the same service
// code runs against an external NATS cluster.
package broker

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/wire"
)

// The broker's accounts. Agents and services share the application
// account; the system account carries the broker's own connect and
// disconnect events, which presence reads.
const (
	AppAccount    = "THINFLEET"
	SystemAccount = "SYS"
	// ServiceUser and SystemUser are the broker users services log in as,
	// with the service token as password.
	ServiceUser = "service"
	SystemUser  = "system"
	// AgentUser is the user agents log in as, with the enrollment token.
	AgentUser = "agent"
)

// Options configure the embedded server.
type Options struct {
	// DataDir holds JetStream's files (in DataDir/nats).
	DataDir string
	// Listen is the host:port agents connect to; port 0 picks a free one.
	Listen string
	// ServerName names this server; it must be unique in a cluster.
	ServerName string
	// ServiceToken is the password of the service and system users.
	ServiceToken string
	// EnrollToken is the password agents connect with.
	EnrollToken string
	// TLS, when set, is required of every network client (in-process
	// connections need none).
	TLS *tls.Config
	Log *slog.Logger
}

// Broker is a running embedded NATS server.
type Broker struct {
	srv  *server.Server
	opts Options
}

// Start starts the server and waits until it accepts connections. The
// server's goroutines end at Shutdown.
func Start(opts Options) (*Broker, error) {
	if opts.ServiceToken == "" || opts.EnrollToken == "" {
		return nil, errors.New("broker: service and enrollment tokens are required")
	}
	for _, tok := range []string{opts.ServiceToken, opts.EnrollToken} {
		if strings.ContainsFunc(tok, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
			return nil, errors.New("broker: tokens may not contain control characters or backslashes")
		}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	host, port, err := splitListen(opts.Listen)
	if err != nil {
		return nil, err
	}
	sopts := &server.Options{}
	// Accounts go through the configuration parser, the only way to enable
	// JetStream for an account of an embedded server before it starts.
	// NATS configuration accepts JSON.
	var conf strings.Builder
	enc := json.NewEncoder(&conf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(accountsConfig(opts)); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if err := sopts.ProcessConfigString(conf.String()); err != nil {
		return nil, fmt.Errorf("broker: accounts: %w", err)
	}
	sopts.ServerName = opts.ServerName
	sopts.Host, sopts.Port = host, port
	sopts.NoSigs = true
	sopts.JetStream = true
	sopts.StoreDir = filepath.Join(opts.DataDir, "nats")
	// Every write is on disk before it is acknowledged: an event an agent
	// saw acknowledged survives kill -9 of the server.
	sopts.SyncAlways = true
	sopts.MaxPayload = 1 << 20
	if opts.TLS != nil {
		sopts.TLSConfig, sopts.TLS, sopts.TLSTimeout = opts.TLS, true, 5
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	srv.SetLoggerV2(slogAdapter{opts.Log.With("component", "nats")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("broker: not ready for connections after 30s")
	}
	return &Broker{srv: srv, opts: opts}, nil
}

// accountsConfig is the broker's accounts and users: agents and services
// in the application account, with agents kept to their own subjects, and
// the system account for the broker's events.
func accountsConfig(opts Options) map[string]any {
	agentPerms := map[string]any{
		"publish": map[string]any{"allow": []string{
			wire.AllHWReports, wire.AllVersionsInstalled, wire.AllHeartbeats, wire.AllStatuses,
		}},
		"subscribe": map[string]any{"allow": []string{wire.AllOffers, "_INBOX.>"}},
	}
	return map[string]any{
		"accounts": map[string]any{
			AppAccount: map[string]any{
				"jetstream": "enabled",
				"users": []any{
					map[string]any{"user": ServiceUser, "password": opts.ServiceToken},
					map[string]any{"user": AgentUser, "password": opts.EnrollToken, "permissions": agentPerms},
				},
			},
			SystemAccount: map[string]any{
				"users": []any{map[string]any{"user": SystemUser, "password": opts.ServiceToken}},
			},
		},
		"system_account": SystemAccount,
	}
}

// splitListen turns "host:port" into nats-server's host and port, where
// port 0 means "pick one" (nats-server's RANDOM_PORT is -1).
func splitListen(addr string) (string, int, error) {
	if addr == "" {
		addr = ":4222"
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("broker: listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("broker: listen address %q: bad port", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// Addr is the address agents connect to.
func (b *Broker) Addr() net.Addr { return b.srv.Addr() }

// ClientURL is a nats:// URL for the agent listener.
func (b *Broker) ClientURL() string { return b.srv.ClientURL() }

// ConnectService opens an in-process connection in the application account
// with full rights, for a service named name.
func (b *Broker) ConnectService(name string, opts ...nats.Option) (*nats.Conn, error) {
	return b.connect(name, ServiceUser, opts)
}

// ConnectSystem opens an in-process connection in the system account, where
// the broker publishes its connect and disconnect events.
func (b *Broker) ConnectSystem(name string, opts ...nats.Option) (*nats.Conn, error) {
	return b.connect(name, SystemUser, opts)
}

func (b *Broker) connect(name, user string, extra []nats.Option) (*nats.Conn, error) {
	opts := append([]nats.Option{
		nats.InProcessServer(b.srv), nats.Name(name),
		nats.UserInfo(user, b.opts.ServiceToken), nats.MaxReconnects(-1),
	}, extra...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: connect %s: %w", name, err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until it has.
func (b *Broker) Shutdown() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

// slogAdapter routes nats-server's log to slog.
type slogAdapter struct{ log *slog.Logger }

// Noticef logs at debug: the server's notices are its start-up banner and
// routine connection news, noise in thinfleet's log.
func (a slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
