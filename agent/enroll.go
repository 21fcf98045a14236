package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/wire"
)

const (
	// Enrollment requests are repeated while an operator has yet to
	// approve the device or the server is away: after enrollRetry at
	// first, backing off to enrollRetryMax.
	enrollRetry    = time.Second
	enrollRetryMax = 30 * time.Second
	// pendingPoll is the pause while the server says an operator has yet
	// to approve: short, so an approval takes effect within seconds.
	pendingPoll = 3 * time.Second
	// A refused enrollment token needs an operator: the retries back off
	// further, to tokenRetryMax, and the warning is repeated only every
	// tokenWarnEvery.
	tokenRetryMax  = 5 * time.Minute
	tokenWarnEvery = 10 * time.Minute
	// A revoked device asks again (connecting, enrolling) with a pause
	// that grows to revokedRetryMax: only an operator can let it back.
	revokedRetryMax = 5 * time.Minute
)

// credentials returns the path of the agent's credentials file, enrolling
// first if there is none, or if the one there is broken: that takes the
// enrollment token, and may wait for an operator's approval. It returns
// ctx's error if ctx ends first.
func (a *Agent) credentials(ctx context.Context) (string, error) {
	path := filepath.Join(a.opts.StateDir, credsFile)
	data, broken, err := readCreds(path)
	switch {
	case err == nil && broken == nil:
		return path, nil
	case err == nil && a.opts.EnrollToken == "":
		return "", fmt.Errorf("agent: %s is unreadable or corrupt (%v), and enrolling again takes the enrollment token (--enroll-token or THINFLEET_ENROLL_TOKEN)", path, broken)
	case err == nil:
		aside, err := moveAside(path)
		if err != nil {
			return "", fmt.Errorf("agent: %s is unreadable or corrupt (%v): %w", path, broken, err)
		}
		a.log.Error(path+" is unreadable or corrupt; enrolling again", "err", broken, "moved_to", aside)
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("agent: credentials: %w", err)
	case a.opts.EnrollToken == "":
		return "", fmt.Errorf("agent: not enrolled yet (no %s): give the enrollment token (--enroll-token or THINFLEET_ENROLL_TOKEN)", path)
	}
	user, err := a.userKey(data)
	if err != nil {
		return "", err
	}
	refusals, pendingSaid := 0, false
	for attempt := 1; ; attempt++ {
		userJWT, err := a.enrollOnce(ctx, user)
		if err == nil {
			seed, _ := user.Seed()
			creds, err := jwt.FormatUserConfig(userJWT, seed)
			if err != nil {
				return "", fmt.Errorf("agent: credentials: %w", err)
			}
			if err := writeFileAtomic(path, creds, 0o600); err != nil {
				return "", fmt.Errorf("agent: credentials: %w", err)
			}
			a.revoked.Store(false)
			a.log.Info("enrolled", "credentials", path)
			return path, nil
		}
		wait := backoff(enrollRetry, enrollRetryMax, attempt)
		switch {
		case errors.Is(err, errPending) && !pendingSaid:
			pendingSaid = true
			a.log.Warn("waiting for an operator to approve this device; on the server run: thinfleet devices approve "+a.id,
				"polling_every", pendingPoll)
			wait = pendingPoll
		case errors.Is(err, errPending):
			a.log.Debug("still waiting for an operator's approval", "attempt", attempt)
			wait = pendingPoll
		case errors.Is(err, errTokenRefused):
			refusals++
			wait = backoff(enrollRetry, tokenRetryMax, refusals)
			a.tokenRefused(err, wait)
		case errors.Is(err, errRevoked):
			refusals++
			wait = backoff(enrollRetry, revokedRetryMax, refusals)
			a.isRevoked(err, wait)
		default:
			a.log.Warn("not enrolled yet", "err", err, "attempt", attempt)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(jittered(wait)):
		}
	}
}

// errPending is the answer while an operator has yet to approve the device.
var errPending = errors.New("waiting for an operator to approve this device")

// errTokenRefused is the broker turning the enrollment token away.
var errTokenRefused = errors.New("the enrollment token was refused")

// errRevoked is the server's answer to a device an operator revoked.
var errRevoked = errors.New("this device is revoked")

// revokedReason is the enrollment service's reason for refusing a revoked
// device (services/enroll); the agent's tests, against the real service,
// keep the two in step.
const revokedReason = "this device has been revoked"

// isRevoked says that the server refuses this device as revoked, in
// words, once; until the server takes the device again, the refusals are
// debug lines, retried after up to revokedRetryMax.
func (a *Agent) isRevoked(err error, retry time.Duration) {
	if !a.revoked.CompareAndSwap(false, true) {
		a.log.Debug("still revoked", "err", err, "retry_in", retry)
		return
	}
	a.log.Error("this device has been revoked by an operator: the server refuses it; asking again rarely",
		"err", err, "retry_max", revokedRetryMax)
}

// reconnectDelay is the pause after the attempts-th failed round of
// reconnects: reconnectDelay's, longer while the device is revoked.
func (a *Agent) reconnectDelay(attempts int) time.Duration {
	if a.revoked.Load() {
		return jittered(backoff(reconnectBase, revokedRetryMax, attempts))
	}
	return reconnectDelay(attempts)
}

// tokenRefused says that the broker refused the enrollment token, in words
// an operator can act on: at the first refusal, then every tokenWarnEvery;
// the refusals between are debug lines.
func (a *Agent) tokenRefused(err error, retry time.Duration) {
	now := time.Now().UnixNano()
	last := a.tokenWarned.Load()
	if last != 0 && time.Duration(now-last) < tokenWarnEvery || !a.tokenWarned.CompareAndSwap(last, now) {
		a.log.Debug("enrollment token still refused", "err", err, "retry_in", retry)
		return
	}
	a.log.Error(fmt.Sprintf("the enrollment token was refused by %s: check --enroll-token / THINFLEET_ENROLL_TOKEN against the server's enroll.token", redactedServers(a.opts.Server)),
		"err", err, "retry_in", retry, "repeated_every", tokenWarnEvery)
}

// redactedServers returns the comma-separated server URLs without any
// password in them.
func redactedServers(servers string) string {
	var out []string
	for s := range strings.SplitSeq(servers, ",") {
		s = strings.TrimSpace(s)
		if u, err := url.Parse(s); err == nil && u.User != nil {
			s = u.Redacted()
		}
		out = append(out, s)
	}
	return strings.Join(out, ",")
}

// enrollOnce asks the server for the agent's user JWT, signing in to the
// enrollment account with the key the enrollment token derives.
func (a *Agent) enrollOnce(ctx context.Context, user nkeys.KeyPair) (string, error) {
	hw, _ := os.Hostname()
	return enroll(ctx, EnrollOptions{Server: a.opts.Server, Token: a.opts.EnrollToken, ID: a.id, Hostname: hw, CA: a.opts.CA}, user)
}

// enroll is one enrollment request for o.ID with user's public key.
func enroll(ctx context.Context, o EnrollOptions, user nkeys.KeyPair) (string, error) {
	account, err := wire.EnrollAccountKey(o.Token)
	if err != nil {
		return "", err
	}
	userPub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(userPub)
	uc.Name = o.ID
	uc.Expires = time.Now().Add(10 * time.Minute).Unix()
	enrollJWT, err := uc.Encode(account)
	if err != nil {
		return "", err
	}
	seed, _ := user.Seed()
	opts := []nats.Option{
		nats.Name(o.ID), nats.UserJWTAndSeed(enrollJWT, string(seed)), nats.NoReconnect(),
		nats.Timeout(10 * time.Second), nats.SetCustomDialer(ctxDialer{ctx, 10 * time.Second}),
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	nc, err := nats.Connect(o.Server, opts...)
	if err != nil && isAuthError(err) {
		return "", fmt.Errorf("%w: %w", errTokenRefused, err)
	}
	if err != nil {
		return "", fmt.Errorf("connect to enroll: %w", err)
	}
	defer nc.Close()
	req, _ := json.Marshal(wire.EnrollRequest{PublicKey: userPub, Hostname: truncateString(o.Hostname, 255)})
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, wire.EnrollSubject(o.ID), req)
	if err != nil {
		return "", fmt.Errorf("enrollment request: %w", err)
	}
	resp, err := wire.Decode[wire.EnrollResponse](msg.Data)
	if err != nil {
		return "", fmt.Errorf("enrollment answer: %w", err)
	}
	switch resp.Status {
	case wire.EnrollApproved:
		return resp.JWT, nil
	case wire.EnrollPending:
		return "", errPending
	case wire.EnrollRefused:
		if resp.Reason == revokedReason {
			return "", fmt.Errorf("%w: the server refused to enroll this device: %s", errRevoked, resp.Reason)
		}
		return "", fmt.Errorf("the server refused to enroll this device: %s", resp.Reason)
	default:
		return "", fmt.Errorf("the server refused to enroll this device: %s", resp.Reason)
	}
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// renewAfter is how many refusals in a row make the agent ask for new
// credentials: the server side's keys changed (a new service token), so
// the broker no longer knows the old ones.
const renewAfter = 3

// connected runs after every (re)connect.
func (a *Agent) connected() {
	a.authFailures.Store(0)
	if a.revoked.Swap(false) {
		a.log.Info("the server takes this device again")
	}
	a.triggerReport()
}

// authRefused returns the handler of the broker refusing the credentials
// at credsPath. After renewAfter refusals in a row, or at once when the
// broker says the credentials were revoked, and with the enrollment
// token at hand, it enrolls again with the same key, in the background,
// and writes the new credentials where the connection reads them at its
// next attempt. A revoked device is refused that too, and stays out: it
// says so once (isRevoked), and the refusals after are debug lines.
func (a *Agent) authRefused(ctx context.Context, credsPath string) func(error) {
	return func(err error) {
		if a.revoked.Load() {
			a.log.Debug("still revoked: the broker refuses our credentials", "err", err)
		} else {
			a.log.Warn("the broker refuses our credentials", "err", err)
		}
		n := a.authFailures.Add(1)
		if n < renewAfter && !errors.Is(err, nats.ErrAuthRevoked) || a.opts.EnrollToken == "" || !a.renewing.CompareAndSwap(false, true) {
			return
		}
		if !a.goRenewal(func() {
			defer a.renewing.Store(false)
			user, err := a.userKey(nil)
			if err != nil {
				a.log.Error("renew credentials", "err", err)
				return
			}
			if !a.revoked.Load() {
				a.log.Info("asking for new credentials")
			}
			userJWT, err := a.enrollOnce(ctx, user)
			switch {
			case errors.Is(err, errTokenRefused):
				a.tokenRefused(err, reconnectMax)
				return
			case errors.Is(err, errRevoked):
				a.isRevoked(err, revokedRetryMax)
				return
			case err != nil:
				a.log.Warn("credentials not renewed", "err", err)
				return
			}
			seed, _ := user.Seed()
			creds, err := jwt.FormatUserConfig(userJWT, seed)
			if err == nil {
				err = writeFileAtomic(credsPath, creds, 0o600)
			}
			if err != nil {
				a.log.Error("renew credentials", "err", err)
				return
			}
			a.authFailures.Store(0)
			a.log.Info("credentials renewed", "credentials", credsPath)
		}) {
			a.renewing.Store(false)
		}
	}
}

// goRenewal runs renew in a goroutine that Run waits for, unless Run is
// ending (false then). It is called from NATS callbacks, which may run
// after the connection was closed.
func (a *Agent) goRenewal(renew func()) bool {
	a.renewalsMu.Lock()
	defer a.renewalsMu.Unlock()
	if a.renewalsDone {
		return false
	}
	a.renewals.Add(1)
	go func() {
		defer a.renewals.Done()
		renew()
	}()
	return true
}

// waitRenewals lets no renewal start any more and waits for the one that
// runs, if any.
func (a *Agent) waitRenewals() {
	a.renewalsMu.Lock()
	a.renewalsDone = true
	a.renewalsMu.Unlock()
	a.renewals.Wait()
}

// ctxDialer dials the broker for as long as ctx lasts: a connection it
// made is closed when ctx ends, so that a connect or request that waits
// on a silent server (nats.Connect takes no context) ends with ctx.
type ctxDialer struct {
	ctx     context.Context
	timeout time.Duration // of the dial alone, as nats.Timeout's
}

func (d ctxDialer) Dial(network, address string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	c, err := nd.DialContext(d.ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &ctxConn{Conn: c, stop: context.AfterFunc(d.ctx, func() { c.Close() })}, nil
}

// ctxConn is a connection that ctxDialer closes when its context ends.
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}
