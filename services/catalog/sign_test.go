package catalog_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/services/catalog"
	"github.com/thinfleet/thinfleet/services/internal/natstest"
)

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// sigOf is the text of data's signature file, signed with key.
func sigOf(t *testing.T, data []byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	sig, err := bundle.Sign(bytes.NewReader(data), key)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(bundle.EncodeSignature(sig) + "\n")
}

func (e env) startSigned(t *testing.T, key ed25519.PublicKey) {
	s, err := catalog.New(catalog.Options{Metrics: natstest.Metrics, Log: natstest.Logger(t), Store: e.store, Dir: e.dir, Rescan: time.Hour, PublisherKey: key})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, s.Run)
}

// reason returns why file was refused, or "".
func reason(c fleet.Catalog, file string) string {
	for _, r := range c.Refused {
		if r.File == file {
			return r.Reason
		}
	}
	return ""
}

// TestPublisherKey drops zips under a catalog that requires signed
// releases, each an attack on it, and checks that every one is refused
// with its reason while nothing else in the catalog changes. The service
// sees the folder through fsnotify alone (its rescan is an hour away), so
// a changed signature file is noticed on its own.
func TestPublisherKey(t *testing.T) {
	pub, priv := newKey(t)
	_, other := newKey(t)
	e := setup(t)
	good := release(t, "1.0")
	drop(t, e.dir, "good.zip", good)
	drop(t, e.dir, "good.zip.sig", sigOf(t, good, priv))
	e.startSigned(t, pub)

	first := e.wait(t, is("good.zip=1.0", "", "1.0"))
	if r := first.Releases[0]; r.SignatureState != fleet.SignatureVerified || r.Signature != strings.TrimSpace(string(sigOf(t, good, priv))) {
		t.Fatalf("signed release: state %q, signature %q; want verified with the file's signature", r.SignatureState, r.Signature)
	}

	v2 := release(t, "2.0")
	flipped := bytes.Clone(v2)
	flipped[len(flipped)/3] ^= 0x01
	attacks := []struct {
		name   string
		file   string
		drop   func(file string)
		reason string
	}{
		{"unsigned", "unsigned.zip", func(f string) { drop(t, e.dir, f, v2) },
			"no signature unsigned.zip.sig"},
		{"signed with another key", "otherkey.zip", func(f string) {
			drop(t, e.dir, f, v2)
			drop(t, e.dir, f+".sig", sigOf(t, v2, other))
		}, "signature does not verify against the publisher key"},
		{"one byte flipped after signing", "flipped.zip", func(f string) {
			drop(t, e.dir, f, flipped)
			drop(t, e.dir, f+".sig", sigOf(t, v2, priv))
		}, "signature does not verify against the publisher key"},
		{"truncated after signing", "short.zip", func(f string) {
			drop(t, e.dir, f, v2[:len(v2)-1])
			drop(t, e.dir, f+".sig", sigOf(t, v2, priv))
		}, "signature does not verify against the publisher key"},
		{"another zip's signature", "swapped.zip", func(f string) {
			drop(t, e.dir, f, v2)
			drop(t, e.dir, f+".sig", sigOf(t, good, priv))
		}, "signature does not verify against the publisher key"},
		{"signature file not base64", "garbage.zip", func(f string) {
			drop(t, e.dir, f, v2)
			drop(t, e.dir, f+".sig", []byte("this is no signature\n"))
		}, "signature garbage.zip.sig: signature is not base64"},
		{"signature file of the wrong length", "cut.zip", func(f string) {
			drop(t, e.dir, f, v2)
			drop(t, e.dir, f+".sig", sigOf(t, v2, priv)[:40])
		}, "signature cut.zip.sig: signature is 30 bytes"},
	}
	var refusedSoFar []string
	for _, tt := range attacks {
		t.Run(tt.name, func(t *testing.T) {
			tt.drop(tt.file)
			refusedSoFar = append(refusedSoFar, tt.file)
			c := e.wait(t, func(c fleet.Catalog) error {
				if reason(c, tt.file) == "" {
					return fmt.Errorf("%s not refused yet: %q", tt.file, refused(c))
				}
				return nil
			})
			if got := reason(c, tt.file); !strings.HasPrefix(got, tt.reason) {
				t.Errorf("reason = %q, want %q", got, tt.reason)
			}
			if !reflect.DeepEqual(c.Releases, first.Releases) || c.Target != first.Target || c.TargetReason != first.TargetReason {
				t.Errorf("the catalog changed: releases %q target %q, want %q %q", files(c), c.Target, files(first), first.Target)
			}
		})
	}

	// Signing the unsigned zip makes it a release, and the new target,
	// through the signature file's event alone.
	drop(t, e.dir, "unsigned.zip.sig", sigOf(t, v2, priv))
	e.wait(t, func(c fleet.Catalog) error {
		if files(c) != "unsigned.zip=2.0 good.zip=1.0" || c.Target != "2.0" {
			return fmt.Errorf("releases %q target %q; want unsigned.zip signed and the target", files(c), c.Target)
		}
		return nil
	})
	// A signature replaced by a wrong one withdraws the release.
	drop(t, e.dir, "unsigned.zip.sig", sigOf(t, v2, other))
	e.wait(t, func(c fleet.Catalog) error {
		if files(c) != "good.zip=1.0" || c.Target != "1.0" || reason(c, "unsigned.zip") != "signature does not verify against the publisher key" {
			return fmt.Errorf("releases %q target %q, unsigned.zip refused for %q", files(c), c.Target, reason(c, "unsigned.zip"))
		}
		return nil
	})
	// And a removed signature too.
	remove(t, e.dir, "good.zip.sig")
	e.wait(t, func(c fleet.Catalog) error {
		if files(c) != "" || c.Target != "" || !strings.HasPrefix(reason(c, "good.zip"), "no signature good.zip.sig") {
			return fmt.Errorf("releases %q target %q, good.zip refused for %q", files(c), c.Target, reason(c, "good.zip"))
		}
		return nil
	})
}

// TestNoPublisherKey: without a key the catalog accepts what it did
// before, and passes a signature on for the agents that have the key.
func TestNoPublisherKey(t *testing.T) {
	_, priv := newKey(t)
	e := setup(t)
	signed, unsigned, junk := release(t, "1.0"), release(t, "2.0"), release(t, "3.0")
	drop(t, e.dir, "signed.zip", signed)
	drop(t, e.dir, "signed.zip.sig", sigOf(t, signed, priv))
	drop(t, e.dir, "unsigned.zip", unsigned)
	drop(t, e.dir, "junk.zip", junk)
	drop(t, e.dir, "junk.zip.sig", []byte("junk"))
	e.start(t, time.Hour)

	c := e.wait(t, is("junk.zip=3.0 unsigned.zip=2.0 signed.zip=1.0", "", "3.0"))
	want := map[string][2]string{
		"signed.zip":   {fleet.SignatureUnverified, strings.TrimSpace(string(sigOf(t, signed, priv)))},
		"unsigned.zip": {fleet.SignatureUnsigned, ""},
		"junk.zip":     {fleet.SignatureUnsigned, ""},
	}
	for _, r := range c.Releases {
		if got := [2]string{r.SignatureState, r.Signature}; got != want[r.File] {
			t.Errorf("%s: state and signature %q, want %q", r.File, got, want[r.File])
		}
	}
}

func TestNewRefusesABadKey(t *testing.T) {
	e := setup(t)
	if _, err := catalog.New(catalog.Options{Metrics: natstest.Metrics, Store: e.store, Dir: e.dir, PublisherKey: make(ed25519.PublicKey, 10)}); err == nil {
		t.Error("New accepted a 10-byte publisher key")
	}
}
