// Package broker runs thinfleet's embedded NATS server with JetStream.
//
// It is the only package that knows the server is embedded: services get a
// *nats.Conn from ConnectService and see nothing else, so the same service
// code runs against an external NATS cluster.
package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
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
	Log         *slog.Logger
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
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	host, port, err := splitListen(opts.Listen)
	if err != nil {
		return nil, err
	}
	app := server.NewAccount(AppAccount)
	sys := server.NewAccount(SystemAccount)
	agentPerms := &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			wire.AllHWReports, wire.AllVersionsInstalled, wire.AllHeartbeats, wire.AllStatuses,
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{wire.AllOffers, "_INBOX.>"}},
	}
	sopts := &server.Options{
		ServerName: opts.ServerName,
		Host:       host,
		Port:       port,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   filepath.Join(opts.DataDir, "nats"),
		// Every write is on disk before it is acknowledged: an event an
		// agent saw acknowledged survives kill -9 of the server.
		SyncAlways:    true,
		MaxPayload:    1 << 20,
		Accounts:      []*server.Account{app, sys},
		SystemAccount: SystemAccount,
		Users: []*server.User{
			{Username: ServiceUser, Password: opts.ServiceToken, Account: app},
			{Username: SystemUser, Password: opts.ServiceToken, Account: sys},
			{Username: AgentUser, Password: opts.EnrollToken, Account: app, Permissions: agentPerms},
		},
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

func (a slogAdapter) Noticef(format string, v ...any) { a.log.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
