package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runThinfleet runs the thinfleet binary and returns its combined output.
func runThinfleet(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "thinfleet"), args...).CombinedOutput()
	return string(out), err
}

// publish makes a zip of version in a folder of its own, signs it with
// key unless key is "", and moves it into updates, its signature first.
func publish(t *testing.T, updates, file, version, key string, files map[string]string) {
	t.Helper()
	work := t.TempDir()
	writeZip(t, work, file, map[string]string{"name": "Update " + version, "version": version, "command": "sh install.sh"}, files)
	if key != "" {
		if out, err := runThinfleet(t, "sign", "--key", key, filepath.Join(work, file)); err != nil {
			t.Fatalf("thinfleet sign: %v\n%s", err, out)
		}
		if err := os.Rename(filepath.Join(work, file+".sig"), filepath.Join(updates, file+".sig")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(work, file), filepath.Join(updates, file)); err != nil {
		t.Fatal(err)
	}
}

type catalogView struct {
	Updates []struct {
		Version string `json:"version"`
		URL     string `json:"url"`
	} `json:"updates"`
	Refused []struct {
		File   string `json:"file"`
		Reason string `json:"reason"`
	} `json:"refused"`
	Target string `json:"target"`
}

// refusal returns why the catalog refused file, or "".
func (s *server) refusal(t *testing.T, file string) (string, catalogView) {
	var c catalogView
	if err := s.get("/api/v1/catalog", &c); err != nil {
		t.Logf("catalog: %v", err)
	}
	for _, r := range c.Refused {
		if r.File == file {
			return r.Reason, c
		}
	}
	return "", c
}

// TestSignedReleases runs the server and an agent with --publisher-key,
// both made by thinfleet keygen, and publishes releases signed with
// thinfleet sign: a signed zip installs, an unsigned one and one signed
// with another key are refused by the catalog, and the agent stays where
// it was.
func TestSignedReleases(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	root := t.TempDir()
	keys, otherKeys := filepath.Join(root, "keys"), filepath.Join(root, "other-keys")
	for _, dir := range []string{keys, otherKeys} {
		if out, err := runThinfleet(t, "keygen", "--out", dir); err != nil {
			t.Fatalf("thinfleet keygen: %v\n%s", err, out)
		}
	}
	if out, err := runThinfleet(t, "keygen", "--out", keys); err == nil || !strings.Contains(out, "exists") {
		t.Errorf("keygen over an existing key: %v, %q; want a refusal", err, out)
	}
	if st, err := os.Stat(filepath.Join(keys, "publisher.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("publisher.key: %v, mode %v; want 0600", err, st.Mode())
	}
	pub, priv, otherPriv := filepath.Join(keys, "publisher.pub"), filepath.Join(keys, "publisher.key"), filepath.Join(otherKeys, "publisher.key")

	data, updates := filepath.Join(root, "data"), filepath.Join(root, "updates")
	if err := os.MkdirAll(updates, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, data, updates, "127.0.0.1:0", "127.0.0.1:0", "--publisher-key", pub)
	a := startAgent(t, "signed-1", srv.natsURL, filepath.Join(root, "state"), "--publisher-key", pub)
	install := map[string]string{"install.sh": "echo ok > installed.txt\n"}
	on := func(version string) func() (bool, string) { return allOn(srv, t, []string{"signed-1"}, version) }

	publish(t, updates, "update-1.1.zip", "1.1", priv, install)
	waitFor(t, 60*time.Second, "the signed 1.1 installed", on("1.1"))
	if !strings.Contains(readFile(a.logPath), "signature verified") {
		t.Error("the agent's log does not say it verified the signature")
	}

	attacks := []struct {
		name, file, version, key, reason string
	}{
		{"unsigned", "update-1.2.zip", "1.2", "", "no signature update-1.2.zip.sig"},
		{"signed with another key", "update-1.3.zip", "1.3", otherPriv, "signature does not verify against the publisher key"},
	}
	for _, tt := range attacks {
		t.Run(tt.name, func(t *testing.T) {
			publish(t, updates, tt.file, tt.version, tt.key, install)
			var c catalogView
			waitFor(t, 30*time.Second, tt.file+" refused", func() (bool, string) {
				var why string
				why, c = srv.refusal(t, tt.file)
				return why != "", why
			})
			if why, _ := srv.refusal(t, tt.file); !strings.HasPrefix(why, tt.reason) {
				t.Errorf("reason = %q, want %q", why, tt.reason)
			}
			if len(c.Updates) != 1 || c.Target != "1.1" {
				t.Errorf("catalog: %d updates, target %q; want 1.1 alone", len(c.Updates), c.Target)
			}
		})
	}
	for _, d := range srv.devices(t) {
		if d.Version != "1.1" {
			t.Errorf("%s on %q, want 1.1 kept", d.ID, d.Version)
		}
	}

	t.Run("downloads need the offer's link", func(t *testing.T) {
		_, c := srv.refusal(t, "")
		if len(c.Updates) == 0 {
			t.Fatal("no update in the catalog")
		}
		plain := srv.httpURL + "/downloads/update-1.1.zip"
		resp, err := http.Get(plain)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s without a link or token: %d, want 403", plain, resp.StatusCode)
		}
		req, _ := http.NewRequest("GET", plain, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with the admin token: %d, want 200", plain, resp.StatusCode)
		}
	})

	// Signed after all, 1.2 goes out: the new signature file alone brings
	// the catalog to look again.
	t.Run("signing a refused zip publishes it", func(t *testing.T) {
		if out, err := runThinfleet(t, "sign", "--key", priv, filepath.Join(updates, "update-1.2.zip")); err != nil {
			t.Fatalf("thinfleet sign: %v\n%s", err, out)
		}
		waitFor(t, 60*time.Second, "the signed 1.2 installed", on("1.2"))
	})
}
