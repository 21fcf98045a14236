package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/thinfleet/thinfleet/connlimit"
)

// config loads --tls-cert and --tls-key; nil when neither is given.
func (f *tlsFlags) config() (*tls.Config, error) {
	if f.cert == "" && f.key == "" {
		return nil, nil
	}
	if f.cert == "" || f.key == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// httpListener is the HTTP side's listener with what was derived from
// the flags when it was made.
type httpListener struct {
	net.Listener
	// limits are the flags' limits with the total resolved.
	limits httpLimits
	// publicURL is --public-url, or else the listener's address.
	publicURL string
}

// listenHTTP listens on --http, with the connection caps of the HTTP
// limits (below TLS, so a refused connection costs no handshake), over TLS
// when cfg is set; the public URL is public, or else made from the
// listener's address.
func listenHTTP(f *httpFlags, public string, cfg *tls.Config, log *slog.Logger) (*httpListener, error) {
	raw, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, fmt.Errorf("listen for http: %w", err)
	}
	lim := f.limits.resolve(log)
	var ln net.Listener = connlimit.New(raw, connlimit.Options{PerAddr: lim.perAddr, Total: lim.total, Log: log})
	scheme := "http"
	if cfg != nil {
		scheme = "https"
		ln = tls.NewListener(ln, cfg)
	}
	return &httpListener{Listener: ln, limits: lim, publicURL: publicURL(public, scheme, ln.Addr())}, nil
}
