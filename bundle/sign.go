package bundle

// Signatures. A publisher signs each release zip with an ed25519 private
// key, kept off the server; the catalog and the agent check the detached
// signature against the publisher's public key. The signature covers the
// zip's exact bytes, so the manifest and its command are covered too.
//
// The algorithm is Ed25519ph (RFC 8032): ed25519 over the SHA-512 of the
// zip, without a context string. Pre-hashing lets a zip of any size be
// signed and checked in one streaming pass, where plain Ed25519 needs the
// whole message in memory, which a thin client may not have.
//
// The formats are standard ones:
//
//	publisher.key  PEM "PRIVATE KEY", PKCS #8 (what openssl genpkey -algorithm ed25519 writes)
//	publisher.pub  PEM "PUBLIC KEY", PKIX (openssl pkey -pubout)
//	update.zip.sig the 64-byte signature in standard base64 on one line

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// SignatureSuffix is added to a zip's name to name its signature file.
const SignatureSuffix = ".sig"

// maxSignatureFile bounds what is read of a signature file: one line of
// base64 is 88 bytes.
const maxSignatureFile = 4 << 10

// ErrBadSignature is the refusal of a signature that does not verify. It
// wraps [ErrRefused].
var ErrBadSignature error = refusal("signature does not verify against the publisher key")

var phOptions = &ed25519.Options{Hash: crypto.SHA512}

// SignatureFile returns the path of the signature of the zip at zipPath.
func SignatureFile(zipPath string) string { return zipPath + SignatureSuffix }

// Sign signs everything r yields with key.
func Sign(r io.Reader, key ed25519.PrivateKey) ([]byte, error) {
	digest, err := sha512Of(r)
	if err != nil {
		return nil, err
	}
	return key.Sign(nil, digest, phOptions)
}

// SignFile signs the file at path with key.
func SignFile(path string, key ed25519.PrivateKey) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Sign(f, key)
}

// Verify checks that sig is pub's signature of everything r yields. A
// signature that does not verify is [ErrBadSignature]; an error reading r
// is returned as it is.
func Verify(r io.Reader, sig []byte, pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("verify signature: no valid publisher key")
	}
	digest, err := sha512Of(r)
	if err != nil {
		return err
	}
	if len(sig) != ed25519.SignatureSize || ed25519.VerifyWithOptions(pub, digest, sig, phOptions) != nil {
		return ErrBadSignature
	}
	return nil
}

// VerifyFile checks that sig is pub's signature of the file at path.
func VerifyFile(path string, sig []byte, pub ed25519.PublicKey) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return Verify(f, sig, pub)
}

func sha512Of(r io.Reader) ([]byte, error) {
	h := sha512.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return h.Sum(nil), nil
}

// EncodeSignature is the text of a signature file and of an offer's
// signature field: standard base64, without a newline.
func EncodeSignature(sig []byte) string { return base64.StdEncoding.EncodeToString(sig) }

// ParseSignature decodes the text of a signature, ignoring surrounding
// white space. Anything but 64 bytes of standard base64 is refused.
func ParseSignature(text string) ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	switch {
	case err != nil:
		return nil, refuse("signature is not base64")
	case len(sig) != ed25519.SignatureSize:
		return nil, refuse("signature is %d bytes, an ed25519 signature is %d", len(sig), ed25519.SignatureSize)
	}
	return sig, nil
}

// ReadSignature reads and decodes the signature file at path. A missing
// file is an error wrapping fs.ErrNotExist; one that is not a signature
// is refused.
func ReadSignature(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSignatureFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxSignatureFile {
		return nil, refuse("signature file is larger than %s", formatSize(maxSignatureFile))
	}
	return ParseSignature(string(data))
}

// WriteSignature writes sig, encoded, to path (mode 0644: a signature is
// public), replacing what was there.
func WriteSignature(path string, sig []byte) error {
	return os.WriteFile(path, []byte(EncodeSignature(sig)+"\n"), 0o644)
}

// PEM block types of the key files.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// MarshalPrivateKey encodes key as a PEM PKCS #8 block.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// MarshalPublicKey encodes key as a PEM PKIX block.
func MarshalPublicKey(key ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// ParsePrivateKey decodes a PEM PKCS #8 ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	der, err := pemBlock(data, pemPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS #8 private key: %w", err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 private key", k)
	}
	return key, nil
}

// ParsePublicKey decodes a PEM PKIX ed25519 public key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	der, err := pemBlock(data, pemPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %w", err)
	}
	key, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ed25519 public key", k)
	}
	return key, nil
}

// pemBlock returns the contents of the first PEM block in data, which must
// be of type want; text around it (a comment) is ignored.
func pemBlock(data []byte, want string) ([]byte, error) {
	b, _ := pem.Decode(data)
	switch {
	case b == nil:
		return nil, fmt.Errorf("no PEM block (want %q)", want)
	case b.Type != want:
		return nil, fmt.Errorf("PEM block is %q, want %q", b.Type, want)
	}
	return b.Bytes, nil
}

// LoadPrivateKey reads a publisher's private key file.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return k, nil
}

// LoadPublicKey reads a publisher's public key file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("publisher key: %w", err)
	}
	k, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("publisher key %s: %w", path, err)
	}
	return k, nil
}
