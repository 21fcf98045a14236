package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/services/enroll"
	"github.com/thinfleet/thinfleet/wire"
)

// startEnroll builds the enrollment service. It signs agent credentials
// and revocations with keys the service token derives, so it runs beside
// the embedded broker or alone against any broker of that trust.
func startEnroll(ctx context.Context, d dialer, o *options, log *slog.Logger) (func(context.Context) error, error) {
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
		Log: log, Store: store, Conn: nc, Revoker: revoker, Approve: o.approveDevices,
		SysConn: sys, EnrollAccount: enrollAccount,
		Issue: func(id, userKey string) (string, error) { return broker.AgentJWT(signer, account, id, userKey) },
	})
	if err != nil {
		return nil, err
	}
	return s.Run, nil
}

// runEnroll runs the enrollment service alone against --nats-url.
func runEnroll(ctx context.Context, o *options, log *slog.Logger, getenv func(string) string, stdout io.Writer) error {
	d, err := networkDialer(o)
	if err != nil {
		return err
	}
	log = log.With("service", "enroll")
	o.enrollToken = getenv("THINFLEET_ENROLL_TOKEN")
	run, err := startEnroll(ctx, d, o, log)
	if err != nil {
		return err
	}
	log.Info("service running", "nats", o.natsURL, "approve_devices", o.approveDevices)
	return run(ctx)
}

// runNATSConfig prints the configuration that lets a stock nats-server
// serve thinfleet: its operator and accounts, from the tokens in the data
// folder or the environment. It makes no token: new ones would print a
// trust that no server shares.
func runNATSConfig(ctx context.Context, o *options, log *slog.Logger, getenv func(string) string, stdout io.Writer) error {
	service, err := keptSecret(o.data, getenv, "THINFLEET_SERVICE_TOKEN", "service.token")
	if err != nil {
		return err
	}
	enrollToken, err := keptSecret(o.data, getenv, "THINFLEET_ENROLL_TOKEN", "enroll.token")
	if err != nil {
		return err
	}
	conf, err := broker.TrustConfig(service, enrollToken, filepath.Join(o.data, "nats", "accounts"), nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# thinfleet's operator and accounts for nats-server -c (add jetstream and listen settings).\n# Derived from the service and enrollment tokens: keep this file as secret as they are.\n%s", conf)
	return nil
}
