package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/thinfleet/thinfleet/connlimit"
)

// tlsConfig loads --tls-cert and --tls-key; nil when neither is given.
func (o *options) tlsConfig() (*tls.Config, error) {
	if o.tlsCert == "" && o.tlsKey == "" {
		return nil, nil
	}
	if o.tlsCert == "" || o.tlsKey == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// listenHTTP listens on --http, with the connection caps of the HTTP
// limits (below TLS, so a refused connection costs no handshake), over TLS
// when cfg is set, and fills in the public URL from the listener when none
// was given.
func (o *options) listenHTTP(cfg *tls.Config, log *slog.Logger) (net.Listener, error) {
	raw, err := net.Listen("tcp", o.http)
	if err != nil {
		return nil, fmt.Errorf("listen for http: %w", err)
	}
	o.httpLimits.resolve(log)
	var ln net.Listener = connlimit.New(raw, connlimit.Options{PerAddr: o.httpLimits.perAddr, Total: o.httpLimits.total, Log: log})
	scheme := "http"
	if cfg != nil {
		scheme = "https"
		ln = tls.NewListener(ln, cfg)
	}
	o.publicURL = publicURL(o.publicURL, scheme, ln.Addr())
	return ln, nil
}
