package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// testCA makes a certificate authority and a server certificate for
// 127.0.0.1 signed by it, and writes ca.pem, server.pem and server.key.
func testCA(t *testing.T, dir string) (caFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "thinfleet test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	for path, block := range map[string]*pem.Block{
		caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return caFile, certFile, keyFile, pool
}

// TestLoopOverTLS runs the whole loop with the broker and HTTP over TLS:
// an agent that trusts the server's CA enrolls, downloads over https and
// installs; a plain-text client is refused by the broker.
func TestLoopOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	root := t.TempDir()
	caFile, certFile, keyFile, pool := testCA(t, root)
	updates := filepath.Join(root, "updates")
	srv := startServer(t, filepath.Join(root, "data"), updates, "127.0.0.1:0", "127.0.0.1:0",
		"--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(srv.httpURL, "https://") {
		t.Fatalf("server links %q, want https", srv.httpURL)
	}
	srv.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	// Without TLS the broker refuses the connection.
	if nc, err := nats.Connect(srv.natsURL, nats.UserInfo("agent", enrollToken), nats.Timeout(3*time.Second)); err == nil {
		nc.Close()
		t.Error("plain-text connection to the TLS broker was accepted")
	}
	// Without the CA the HTTP API refuses to talk.
	if _, err := http.Get(srv.httpURL + "/healthz"); err == nil {
		t.Error("https served a certificate that a client without the CA trusted")
	}

	startAgent(t, "tls-agent", srv.natsURL, filepath.Join(root, "state"), "--ca", caFile)
	writeZip(t, updates, "update-2.0.zip", map[string]string{"name": "TLS", "version": "2.0", "command": "true"}, nil)
	waitFor(t, 60*time.Second, "agent installs 2.0 over TLS", allOn(srv, t, []string{"tls-agent"}, "2.0"))
}
