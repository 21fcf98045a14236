package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/thinfleet/thinfleet/bundle"
)

// Publisher keys and signed releases: "thinfleet keygen" makes the key
// pair, "thinfleet sign" the detached signature of a zip, and
// --publisher-key makes the catalog refuse what is not signed with it.
// Download links are signed with another key, the server's secret
// download.key (secrets.go), shared by decision and web.

// The key files keygen writes.
const (
	privateKeyFile = "publisher.key"
	publicKeyFile  = "publisher.pub"
)

// publisherKey is a flag naming a public key file; setting it loads the
// key, so a bad file fails at the command line with the reason.
type publisherKey struct {
	path string
	key  ed25519.PublicKey
}

func (p *publisherKey) String() string { return p.path }

func (p *publisherKey) Set(path string) error {
	k, err := bundle.LoadPublicKey(path)
	if err != nil {
		return err
	}
	p.path, p.key = path, k
	return nil
}

// publisherKeyFlag is the public key releases must verify against.
func publisherKeyFlag(fs *flag.FlagSet) *publisherKey {
	var k publisherKey
	fs.Var(&k, "publisher-key", "public key `file` (thinfleet keygen's "+publicKeyFile+"): refuse every update zip without a signature that verifies against it")
	return &k
}

// downloadKeyFlag is the secret of download links, for decision and web
// alone (the server keeps its own).
func downloadKeyFlag(fs *flag.FlagSet) *string {
	return fs.String("download-key", "", "secret that signs the download links in offers, the same for decision and web (better set as THINFLEET_DOWNLOAD_KEY; the server keeps it as download.key)")
}

func keygenFlags(fs *flag.FlagSet) func(context.Context, env) error {
	out := fs.String("out", ".", "`folder` to write "+privateKeyFile+" and "+publicKeyFile+" in")
	return func(ctx context.Context, e env) error { return runKeygen(*out, e.stdout) }
}

// runKeygen writes a new publisher key pair, never over an existing one.
func runKeygen(out string, stdout io.Writer) error {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	privPEM, err := bundle.MarshalPrivateKey(priv)
	if err != nil {
		return err
	}
	pubPEM, err := bundle.MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	privPath, pubPath := filepath.Join(out, privateKeyFile), filepath.Join(out, publicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("keygen: %s exists; not overwriting a key (move it away first)", p)
		}
	}
	if err := writeNew(privPath, privPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pubPEM, 0o644); err != nil {
		os.Remove(privPath) // half a pair is no use
		return err
	}
	fmt.Fprintf(stdout, `publisher key pair written:
  %s  private: keep it secret, off the server; it signs releases
  %s  public: give it to the server and every agent (--publisher-key)
sign a release with:
  thinfleet sign --key %s update.zip
`, privPath, pubPath, privPath)
	return nil
}

// writeNew writes a file that must not exist yet, and syncs it.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("keygen: %s exists; not overwriting a key", path)
	}
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("keygen: write %s: %w", path, err)
	}
	return nil
}

func signFlags(fs *flag.FlagSet) func(context.Context, env) error {
	key := fs.String("key", privateKeyFile, "the publisher's private key `file`")
	return func(ctx context.Context, e env) error { return runSign(*key, e.args, e.stdout) }
}

// runSign writes ZIP.sig beside each zip. It checks each zip as the
// catalog will first: signing a package that would be refused anyway
// helps nobody.
func runSign(keyFile string, zips []string, stdout io.Writer) error {
	if len(zips) == 0 {
		return errors.New("sign: name the update zip(s) to sign")
	}
	key, err := bundle.LoadPrivateKey(keyFile)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	for _, zipPath := range zips {
		if _, err := bundle.Inspect(zipPath, bundle.DefaultLimits); err != nil {
			return fmt.Errorf("sign: %s: %w", zipPath, err)
		}
		sig, err := bundle.SignFile(zipPath, key)
		if err != nil {
			return fmt.Errorf("sign: %s: %w", zipPath, err)
		}
		// Renamed into place, so the catalog never reads half a file.
		sigPath := bundle.SignatureFile(zipPath)
		tmp := filepath.Join(filepath.Dir(sigPath), "."+filepath.Base(sigPath)+".tmp")
		if err := bundle.WriteSignature(tmp, sig); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		if err := os.Rename(tmp, sigPath); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("sign: %w", err)
		}
		fmt.Fprintf(stdout, "signed %s: %s\n", zipPath, sigPath)
	}
	return nil
}
