package bundle

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key pair openssl made (openssl genpkey -algorithm ed25519; openssl
// pkey -pubout): the key files are the standard formats, not our own.
const (
	opensslPrivate = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJMqbP49xXa8r3/DzTV3mc7QAaomD+78dx+LV5lLfr8L
-----END PRIVATE KEY-----
`
	opensslPublic = `# publisher key of the tests
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAlW+g22NPYhsevauUKm5WvypDRX6h7Lu3vP+mBzdNYDY=
-----END PUBLIC KEY-----
`
)

// testKey is a fixed key pair, so the fuzz corpus stays meaningful.
func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	priv, err := ParsePrivateKey([]byte(opensslPrivate))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey([]byte(opensslPublic))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("the openssl public key is not the private key's")
	}
	return pub, priv
}

func mustSign(t testing.TB, data []byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	sig, err := Sign(bytes.NewReader(data), key)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestVerify(t *testing.T) {
	pub, priv := testKey(t)
	_, other, _ := ed25519.GenerateKey(nil)
	zip := buildZip(t, manifest, zipEntry{name: "install.sh", body: "echo hi\n"})
	good := mustSign(t, zip, priv)

	flipped := bytes.Clone(zip)
	flipped[len(flipped)/2] ^= 0x01
	badSig := bytes.Clone(good)
	badSig[0] ^= 0x80
	tests := []struct {
		name string
		data []byte
		sig  []byte
		ok   bool
	}{
		{"genuine", zip, good, true},
		{"one byte flipped", flipped, good, false},
		{"truncated", zip[:len(zip)-1], good, false},
		{"too long", append(bytes.Clone(zip), 0), good, false},
		{"empty data", nil, good, false},
		{"signed with another key", zip, mustSign(t, zip, other), false},
		{"signature bit flipped", zip, badSig, false},
		{"signature cut short", zip, good[:63], false},
		{"no signature", zip, nil, false},
		{"pure Ed25519 instead of Ed25519ph", zip, ed25519.Sign(priv, zip), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(bytes.NewReader(tt.data), tt.sig, pub)
			if tt.ok {
				if err != nil {
					t.Fatalf("Verify: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrBadSignature) || !errors.Is(err, ErrRefused) {
				t.Fatalf("Verify: %v, want ErrBadSignature wrapping ErrRefused", err)
			}
		})
	}
	if err := Verify(bytes.NewReader(zip), good, nil); err == nil || errors.Is(err, ErrRefused) {
		t.Errorf("Verify without a key: %v, want an error that is no refusal of the package", err)
	}
}

func TestSignatureFiles(t *testing.T) {
	pub, priv := testKey(t)
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "update.zip")
	if err := os.WriteFile(zipPath, buildZip(t, manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSignature(SignatureFile(zipPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("ReadSignature of a missing file: %v, want fs.ErrNotExist", err)
	}
	sig, err := SignFile(zipPath, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSignature(SignatureFile(zipPath), sig); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(zipPath + ".sig")
	if got := string(text); got != EncodeSignature(sig)+"\n" || len(got) != 89 {
		t.Errorf("signature file = %q, want one line of base64", got)
	}
	read, err := ReadSignature(SignatureFile(zipPath))
	if err != nil || !bytes.Equal(read, sig) {
		t.Fatalf("ReadSignature = %x, %v; want %x", read, err, sig)
	}
	if err := VerifyFile(zipPath, read, pub); err != nil {
		t.Errorf("VerifyFile: %v", err)
	}

	bad := []struct{ name, text, want string }{
		{"not base64", "not a signature!", "not base64"},
		{"too short", EncodeSignature(sig[:32]), "32 bytes"},
		{"too long", EncodeSignature(append(sig, 0)), "65 bytes"},
		{"empty", "", "0 bytes"},
		{"huge", strings.Repeat("A", 5000), "larger than"},
	}
	for _, tt := range bad {
		if err := os.WriteFile(zipPath+".sig", []byte(tt.text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadSignature(SignatureFile(zipPath))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ReadSignature: %v, want a refusal saying %q", tt.name, err, tt.want)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := MarshalPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gotPriv, err := LoadPrivateKey(write("k", privPEM))
	if err != nil || !gotPriv.Equal(priv) {
		t.Errorf("LoadPrivateKey: %v, equal %v", err, gotPriv.Equal(priv))
	}
	gotPub, err := LoadPublicKey(write("p", pubPEM))
	if err != nil || !gotPub.Equal(pub) {
		t.Errorf("LoadPublicKey: %v, equal %v", err, gotPub.Equal(pub))
	}

	bad := []struct {
		name string
		data string
		want string
	}{
		{"private key as public", string(privPEM), `"PRIVATE KEY", want "PUBLIC KEY"`},
		{"not PEM", "hello", "no PEM block"},
		{"garbage in the block", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PKIX public key"},
	}
	for _, tt := range bad {
		if _, err := LoadPublicKey(write("bad", []byte(tt.data))); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: LoadPublicKey: %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := LoadPrivateKey(write("bad", pubPEM)); err == nil {
		t.Error("LoadPrivateKey accepted a public key")
	}
	if _, err := LoadPublicKey(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPublicKey of a missing file: %v", err)
	}
}

// FuzzVerify checks that Verify never panics and accepts exactly one
// signature: the genuine one of the exact data. Ed25519 signatures are
// deterministic and Go refuses non-canonical encodings, so any other
// signature that verified would be a forgery.
func FuzzVerify(f *testing.F) {
	_, priv := testKey(f)
	zip := buildZip(f, manifest)
	good := mustSign(f, zip, priv)
	f.Add(zip, good)
	f.Add(zip[:len(zip)-1], good)
	f.Add(append(bytes.Clone(zip), '\n'), good)
	f.Add([]byte{}, good)
	f.Add(zip, []byte{})
	f.Add(zip, make([]byte, 64))
	f.Add(zip, bytes.Repeat([]byte{0xff}, 64))
	f.Add(zip, ed25519.Sign(priv, zip))
	f.Add([]byte("hello"), mustSign(f, []byte("hello"), priv))
	f.Add([]byte("hello"), good)
	f.Fuzz(func(t *testing.T, data, sig []byte) {
		pub, priv := testKey(t)
		err := Verify(bytes.NewReader(data), sig, pub)
		genuine := bytes.Equal(sig, mustSign(t, data, priv))
		switch {
		case err == nil && !genuine:
			t.Fatalf("Verify accepted a signature that is not the genuine one: %x", sig)
		case err != nil && genuine:
			t.Fatalf("Verify refused the genuine signature: %v", err)
		case err != nil && !errors.Is(err, ErrBadSignature):
			t.Fatalf("Verify: %v, want ErrBadSignature", err)
		}
		// What travels as text must decode to the same, or be refused.
		if back, err := ParseSignature(EncodeSignature(sig)); len(sig) == 64 && (err != nil || !bytes.Equal(back, sig)) {
			t.Fatalf("signature round trip: %x, %v", back, err)
		} else if len(sig) != 64 && err == nil {
			t.Fatalf("ParseSignature accepted %d bytes", len(sig))
		}
	})
}
