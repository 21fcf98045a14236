package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
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

// keyFlags are the flags of keys and signatures.
type keyFlags struct {
	publisher publisherKey // --publisher-key: the public key releases must verify against
	download  string       // --download-key: the secret of download links (decision and web alone)
	out       string       // keygen --out
	signWith  string       // sign --key
}

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

func (o *options) registerKeys(fs *flag.FlagSet, groups flagGroup) {
	if groups&flagPublisherKey != 0 {
		fs.Var(&o.keys.publisher, "publisher-key", "public key `file` (thinfleet keygen's "+publicKeyFile+"): refuse every update zip without a signature that verifies against it")
	}
	if groups&flagDownloadKey != 0 {
		fs.StringVar(&o.keys.download, "download-key", "", "secret that signs the download links in offers, the same for decision and web (better set as THINFLEET_DOWNLOAD_KEY; the server keeps it as download.key)")
	}
	if groups&flagKeygen != 0 {
		fs.StringVar(&o.keys.out, "out", ".", "`folder` to write "+privateKeyFile+" and "+publicKeyFile+" in")
	}
	if groups&flagSign != 0 {
		fs.StringVar(&o.keys.signWith, "key", privateKeyFile, "the publisher's private key `file`")
	}
}

// runKeygen writes a new publisher key pair, never over an existing one.
func runKeygen(ctx context.Context, o *options, log *slog.Logger, getenv func(string) string, stdout io.Writer) error {
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
	if err := os.MkdirAll(o.keys.out, 0o755); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	privPath, pubPath := filepath.Join(o.keys.out, privateKeyFile), filepath.Join(o.keys.out, publicKeyFile)
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

// runSign writes ZIP.sig beside each zip. It checks each zip as the
// catalog will first: signing a package that would be refused anyway
// helps nobody.
func runSign(ctx context.Context, o *options, log *slog.Logger, getenv func(string) string, stdout io.Writer) error {
	if len(o.args) == 0 {
		return errors.New("sign: name the update zip(s) to sign")
	}
	key, err := bundle.LoadPrivateKey(o.keys.signWith)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	for _, zipPath := range o.args {
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
