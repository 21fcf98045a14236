package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/metrics"
	"github.com/thinfleet/thinfleet/services/enroll"
	"github.com/thinfleet/thinfleet/wire"
)

// enrollConfig is what the enrollment service needs besides its
// connections.
type enrollConfig struct {
	serviceToken string
	// enrollToken, when known, lets the enrollment service watch the
	// enrollment account's connections.
	enrollToken string
	// approve keeps new agents pending until an operator approves.
	approve bool
	metrics *metrics.Metrics
	limits  enrollLimits
}

// startEnroll builds the enrollment service. It signs agent credentials
// and revocations with keys the service token derives, so it runs beside
// the embedded broker or alone against any broker of that trust.
func startEnroll(ctx context.Context, d dialer, o enrollConfig, log *slog.Logger) (func(context.Context) error, error) {
	nc, store, err := openStore(ctx, d, "enroll")
	if err != nil {
		return nil, err
	}
	signer, account, err := broker.AgentSignerOf(o.serviceToken)
	if err != nil {
		return nil, err
	}
	sys, err := d.system("thinfleet-enroll-revoke")
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, sys.Close)
	revoker, err := broker.NewRevoker(o.serviceToken, sys)
	if err != nil {
		return nil, err
	}
	var enrollAccount string
	if o.enrollToken != "" {
		kp, err := wire.EnrollAccountKey(o.enrollToken)
		if err != nil {
			return nil, err
		}
		enrollAccount, _ = kp.PublicKey()
	} else {
		log.Warn("no THINFLEET_ENROLL_TOKEN: enrollment connections held open are not closed")
	}
	s, err := enroll.New(enroll.Options{
		Log: log, Metrics: o.metrics, Store: store, Conn: nc, Revoker: revoker, Approve: o.approve,
		SysConn: sys, EnrollAccount: enrollAccount, Rate: o.limits.rate, Burst: o.limits.burst,
		Issue: func(id, userKey string) (string, error) { return broker.AgentJWT(signer, account, id, userKey) },
	})
	if err != nil {
		return nil, err
	}
	return s.Run, nil
}

// enrollOptions are "thinfleet enroll"'s.
type enrollOptions struct {
	client  *clientFlags
	approve *bool
	ops     *string
	limits  *enrollLimits
}

func enrollFlags(fs *flag.FlagSet) func(context.Context, env) error {
	o := enrollOptions{client: clientFlagsOn(fs), approve: approveFlag(fs), ops: opsFlag(fs), limits: enrollLimitsOn(fs)}
	return func(ctx context.Context, e env) error { return runEnroll(ctx, o, e) }
}

// runEnroll runs the enrollment service alone against --nats-url.
func runEnroll(ctx context.Context, o enrollOptions, e env) error {
	d, err := networkDialer(o.client)
	if err != nil {
		return err
	}
	log := e.log.With("service", "enroll")
	reg := metrics.NewRegistry()
	c := enrollConfig{serviceToken: o.client.serviceToken, enrollToken: e.getenv("THINFLEET_ENROLL_TOKEN"), approve: *o.approve, metrics: metrics.New(reg), limits: *o.limits}
	run, err := startEnroll(ctx, d, c, log)
	if err != nil {
		return err
	}
	log.Info("service running", "nats", o.client.url, "approve_devices", c.approve)
	return runWithOps(ctx, d, *o.ops, reg, "enroll", log, run)
}

func natsConfigFlags(fs *flag.FlagSet) func(context.Context, env) error {
	data := dataFlag(fs)
	return func(ctx context.Context, e env) error { return runNATSConfig(*data, e) }
}

// runNATSConfig prints the configuration that lets a stock nats-server
// serve thinfleet: its operator and accounts, from the tokens in the data
// folder or the environment. It makes no token: new ones would print a
// trust that no server shares.
func runNATSConfig(data string, e env) error {
	service, err := keptSecret(data, e.getenv, "THINFLEET_SERVICE_TOKEN", "service.token")
	if err != nil {
		return err
	}
	enrollToken, err := keptSecret(data, e.getenv, "THINFLEET_ENROLL_TOKEN", "enroll.token")
	if err != nil {
		return err
	}
	conf, err := broker.TrustConfig(service, enrollToken, filepath.Join(data, "nats", "accounts"), nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "# thinfleet's operator and accounts for nats-server -c (add jetstream and listen settings).\n# Derived from the service and enrollment tokens: keep this file as secret as they are.\n%s", conf)
	return nil
}
