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

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/wire"
)

// The broker's account names. The application account holds agents and
// services; the system account carries the broker's own events, which
// presence reads; agents ask for their credentials in the enrollment
// account.
const (
	AppAccount    = "THINFLEET"
	SystemAccount = "SYS"
)

// Options configure the embedded server.
type Options struct {
	// DataDir holds JetStream's files (in DataDir/nats).
	DataDir string
	// Listen is the host:port agents connect to; port 0 picks a free one.
	Listen string
	// ServerName names this server; it must be unique in a cluster.
	ServerName string
	// ServiceToken is the server side's root secret: every key is derived
	// from it, and the nodes of a cluster log in to each other with it.
	ServiceToken string
	// EnrollToken lets agents ask for their credentials.
	EnrollToken string
	// TLS, when set, is required of every network client (in-process
	// connections need none).
	TLS *tls.Config
	Log *slog.Logger
	// Metrics count the JetStream write faults; nil counts nothing.
	Metrics *metrics.Metrics
	// Cluster, when set, joins the server to a cluster (cluster.go).
	Cluster *Cluster
}

// Broker is a running embedded NATS server.
type Broker struct {
	srv  *server.Server
	opts Options
	keys keys
	// faults are JetStream's write faults, from the server's log.
	faults faults
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
	b := &Broker{opts: opts, faults: faults{metrics: opts.Metrics}}
	if b.keys, err = deriveKeys(opts.ServiceToken); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	resolverDir := filepath.Join(opts.DataDir, "nats", "accounts")
	conf, err := TrustConfig(opts.ServiceToken, opts.EnrollToken, resolverDir, storedRevocations(resolverDir, b.keys))
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	sopts := &server.Options{}
	if err := sopts.ProcessConfigString(conf); err != nil {
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
	// nats-server keeps the last 10,000 closed connections for its
	// monitoring (connz?state=closed), which thinfleet does not serve:
	// 8.5 MB of heap once 10,000 agents have reconnected. A hundred
	// remain for a look in a debugger.
	sopts.MaxClosedClients = 100
	if err := opts.Cluster.apply(sopts, opts); err != nil {
		return nil, err
	}
	if opts.TLS != nil {
		sopts.TLSConfig, sopts.TLS, sopts.TLSTimeout = opts.TLS, true, 5
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	natsLog := opts.Log.With("component", "nats")
	srv.SetLoggerV2(faultLogger{slogAdapter: slogAdapter{natsLog}, faults: &b.faults, log: natsLog}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("broker: not ready for connections after 30s")
	}
	b.srv = srv
	return b, nil
}

// TrustConfig is a NATS server configuration (JSON, which the NATS
// configuration format accepts) holding thinfleet's trust: the operator
// and the three accounts derived from serviceToken and enrollToken,
// preloaded into a full resolver kept in resolverDir, which keeps later
// updates such as revocations on disk and shares them across a cluster.
// The embedded broker starts from it; a stock nats-server started with it
// (plus JetStream and a listen address) serves thinfleet unchanged.
// revocations are carried into the application account.
func TrustConfig(serviceToken, enrollToken, resolverDir string, revocations jwt.RevocationList) (string, error) {
	k, err := deriveKeys(serviceToken)
	if err != nil {
		return "", err
	}
	enroll, err := wire.EnrollAccountKey(enrollToken)
	if err != nil {
		return "", err
	}
	op, err := operatorJWT(k)
	if err != nil {
		return "", err
	}
	app, err := appAccountJWT(k, revocations)
	if err != nil {
		return "", err
	}
	sys, err := sysAccountJWT(k)
	if err != nil {
		return "", err
	}
	enr, err := enrollAccountJWT(k, enroll)
	if err != nil {
		return "", err
	}
	var conf strings.Builder
	enc := json.NewEncoder(&conf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	err = enc.Encode(map[string]any{
		"operator":       op,
		"system_account": pub(k.sys),
		"resolver":       map[string]any{"type": "full", "dir": resolverDir, "allow_delete": false},
		"resolver_preload": map[string]string{
			pub(k.app): app, pub(k.sys): sys, pub(enroll): enr,
		},
	})
	return conf.String(), err
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

// ConnectService opens an in-process connection for a service named
// name: a user of the application account with full rights.
func (b *Broker) ConnectService(name string, opts ...nats.Option) (*nats.Conn, error) {
	return b.connect(b.keys.app, name, opts)
}

// ConnectSystem opens an in-process connection in the system account, where
// the broker publishes its connect and disconnect events.
func (b *Broker) ConnectSystem(name string, opts ...nats.Option) (*nats.Conn, error) {
	return b.connect(b.keys.sys, name, opts)
}

func (b *Broker) connect(account nkeys.KeyPair, name string, extra []nats.Option) (*nats.Conn, error) {
	userJWT, seed, err := userJWT(account, name)
	if err != nil {
		return nil, fmt.Errorf("broker: credentials for %s: %w", name, err)
	}
	opts := append([]nats.Option{
		nats.InProcessServer(b.srv), nats.Name(name),
		nats.UserJWTAndSeed(userJWT, string(seed)), nats.MaxReconnects(-1),
	}, extra...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: connect %s: %w", name, err)
	}
	return nc, nil
}

// AppAccountKey is the application account's public key, which names it
// in the broker's subjects ($SYS.ACCOUNT.<key>.DISCONNECT).
func (b *Broker) AppAccountKey() string { return pub(b.keys.app) }

// AgentSigner returns the scoped key that signs agent users, and the
// application account it signs for; the enrollment service issues agent
// credentials with them.
func (b *Broker) AgentSigner() (signer nkeys.KeyPair, account string) {
	return b.keys.agentSigner, pub(b.keys.app)
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
