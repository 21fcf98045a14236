package web

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// The admin token must carry about 128 random bits. Its randomness cannot
// be measured, so the rule is practical: long enough for 128 bits of
// base64 (22 characters; hex needs 32), and not plainly made by hand.
const (
	minTokenLen      = 22
	minTokenDistinct = 8
)

// CheckAdminToken returns why token is too weak to guard the API, or nil.
func CheckAdminToken(token string) error {
	if len(token) < minTokenLen {
		return fmt.Errorf("it is %d characters long; it needs at least %d random ones (128 bits)", len(token), minTokenLen)
	}
	distinct := map[rune]bool{}
	for _, r := range token {
		distinct[r] = true
	}
	if len(distinct) < minTokenDistinct {
		return fmt.Errorf("it has only %d distinct characters: it is not random", len(distinct))
	}
	for period := 1; period <= len(token)/2; period++ {
		if token[period:] == token[:len(token)-period] {
			return fmt.Errorf("it repeats every %d characters: it is not random", period)
		}
	}
	return nil
}

// errThrottled is a wrong admin token from an address that has spent its
// budget of guesses.
var errThrottled = errors.New("too many wrong admin tokens from this address")

// checkToken reports whether got is the admin token. The right token is
// always accepted, even from an address throttled for wrong ones, so an
// attacker sharing an operator's address (a NAT, a proxy) cannot lock the
// operator out. A wrong one spends the address's budget of guesses
// (logins), shared by the API and the sign-in form; past it the answer is
// errThrottled. The token's 128 bits, not the throttle, are what defeat
// guessing; the throttle makes a guesser loud and cheap to turn away.
func (s *Server) checkToken(r *http.Request, got string) error {
	if subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.AdminToken)) == 1 {
		return nil
	}
	client, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		client = r.RemoteAddr
	}
	ok, warn := s.logins.Allow(client)
	if warn {
		s.log.Warn("wrong admin tokens over the limit", "remote", client, "path", r.URL.Path)
	}
	if !ok {
		return errThrottled
	}
	return errors.New("wrong admin token")
}
