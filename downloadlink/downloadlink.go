// Package downloadlink signs and checks the short-lived download links
// that the decision service puts in offers and the web server honours:
//
//	/downloads/<file>?exp=<unix seconds>&sig=<hex HMAC-SHA256(key, file "\n" exp)>
//
// The key is a secret the server keeps (download.key in its data folder);
// whoever holds a link may fetch that one file until the link expires, and
// nothing else. The file name in the MAC is the unescaped one, as the
// router hands it over.
package downloadlink

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// Prefix is the path under which the web server serves the downloads.
const Prefix = "/downloads/"

// Lifetime is how long a link is valid: as long as an offer is (an agent
// refuses an older offer as a replay, so a longer link would buy nothing).
const Lifetime = wire.OfferLifetime

// MinKeyLength is the shortest key accepted, in bytes.
const MinKeyLength = 16

// The reasons a link is refused.
var (
	ErrNoLink  = errors.New("not a signed link (no exp and sig)")
	ErrExpired = errors.New("the link has expired")
	ErrForged  = errors.New("the link's signature does not match")
	ErrNoKey   = errors.New("no download link key is configured")
)

// Path returns the signed path of file, valid until expires.
func Path(key []byte, file string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	q := url.Values{"exp": {exp}, "sig": {mac(key, file, exp)}}
	return Prefix + url.PathEscape(file) + "?" + q.Encode()
}

// Check reports whether query (the link's exp and sig) makes a valid,
// unexpired link to file at time now.
func Check(key []byte, file string, query url.Values, now time.Time) error {
	if len(key) < MinKeyLength {
		return ErrNoKey
	}
	exp, sig := query.Get("exp"), query.Get("sig")
	if exp == "" && sig == "" {
		return ErrNoLink
	}
	want, err := hex.DecodeString(mac(key, file, exp))
	if err != nil {
		return err // cannot be: mac returns hex
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, want) {
		return ErrForged
	}
	// Only a genuine exp is worth reading.
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !now.Before(time.Unix(unix, 0)) {
		return ErrExpired
	}
	return nil
}

func mac(key []byte, file, exp string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(file))
	h.Write([]byte{'\n'})
	h.Write([]byte(exp))
	return hex.EncodeToString(h.Sum(nil))
}

// signedQuery is the query of a signed link, as it shows up in text: an
// agent's error ("GET http://…/downloads/u.zip?exp=…&sig=…: 404") ends
// up in the history and on the device page.
var signedQuery = regexp.MustCompile(`\?[A-Za-z0-9._~%+=&;-]*\b(?:exp|sig)=[A-Za-z0-9._~%+=&;-]*`)

// Redact returns s with the exp and sig of every signed link in it cut
// off, leaving the path: a page or a history row that quotes a link must
// not hand out a working one (it would fetch the zip until it expires).
func Redact(s string) string {
	if !strings.Contains(s, "sig=") && !strings.Contains(s, "exp=") {
		return s
	}
	return signedQuery.ReplaceAllString(s, "")
}
