package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/bundle"
)

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), args, func(string) string { return "" }, &out, &errb)
	return out.String(), errb.String(), err
}

func writeTestZip(t *testing.T, path, manifest string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("manifest.json")
	w.Write([]byte(manifest))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestKeygenAndSign(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if _, stderr, err := runCmd(t, "keygen", "--out", keys); err != nil {
		t.Fatalf("keygen: %v\n%s", err, stderr)
	}
	priv, pub := filepath.Join(keys, "publisher.key"), filepath.Join(keys, "publisher.pub")
	for path, mode := range map[string]os.FileMode{priv: 0o600, pub: 0o644} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v; want %v", path, err, st.Mode().Perm(), mode)
		}
	}
	before, _ := os.ReadFile(priv)
	if _, _, err := runCmd(t, "keygen", "--out", keys); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("keygen over a key: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(priv); !bytes.Equal(before, after) {
		t.Error("keygen changed an existing key")
	}
	os.Remove(pub) // half a pair left: still no overwrite
	if _, _, err := runCmd(t, "keygen", "--out", keys); err == nil {
		t.Error("keygen wrote over a private key whose public half was gone")
	}

	good, bad := filepath.Join(dir, "update.zip"), filepath.Join(dir, "bad.zip")
	writeTestZip(t, good, `{"name": "U", "version": "1.0", "command": "true"}`)
	writeTestZip(t, bad, `{"name": "U"}`)
	stdout, _, err := runCmd(t, "sign", "--key", priv, good)
	if err != nil || !strings.Contains(stdout, "update.zip.sig") {
		t.Fatalf("sign: %v, %q", err, stdout)
	}
	pk, err := bundle.LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := bundle.ReadSignature(good + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.VerifyFile(good, sig, pk.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("the signature written does not verify: %v", err)
	}
	if _, _, err := runCmd(t, "sign", "--key", priv, bad); err == nil || !strings.Contains(err.Error(), "version: required") {
		t.Errorf("sign of an invalid package: %v, want the catalog's reason", err)
	}
	if _, err := os.Stat(bad + ".sig"); err == nil {
		t.Error("an invalid package was signed")
	}
	if _, _, err := runCmd(t, "sign", "--key", priv); err == nil {
		t.Error("sign without a zip: no error")
	}
	if _, _, err := runCmd(t, "sign", "--key", pub, good); err == nil {
		t.Error("sign with a public key: no error")
	}
	if _, _, err := runCmd(t, "catalog", "--publisher-key", priv); err == nil || !strings.Contains(err.Error(), "PUBLIC KEY") {
		t.Errorf("catalog --publisher-key <private key>: %v, want it refused at the flag", err)
	}
}
