package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestStockNATSServer runs thinfleet's services, each alone, against a
// stock nats-server (built from the same nats-server module, not the
// embedded one) configured only by "thinfleet nats-config": an agent
// enrolls, installs a dropped update and is seen on it through the API.
// The services reach the broker the way they would reach any NATS server.
func TestStockNATSServer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	root := t.TempDir()
	natsBin := filepath.Join(binDir, "nats-server")
	if _, err := os.Stat(natsBin); err != nil {
		build := exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build nats-server: %v\n%s", err, out)
		}
	}
	env := []string{
		"THINFLEET_SERVICE_TOKEN=" + clusterServiceToken, "THINFLEET_ADMIN_TOKEN=" + adminToken,
		"THINFLEET_ENROLL_TOKEN=" + enrollToken, "THINFLEET_DOWNLOAD_KEY=" + clusterDownloadKey,
	}
	cmd := exec.Command(filepath.Join(binDir, "thinfleet"), "nats-config", "--data", filepath.Join(root, "data"))
	cmd.Env = append(os.Environ(), env...)
	trust, err := cmd.Output()
	if err != nil {
		t.Fatalf("thinfleet nats-config: %v", err)
	}
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := filepath.Join(root, "nats.conf")
	extra := fmt.Sprintf("listen: %q\njetstream: {store_dir: %q}\n", natsAddr, filepath.Join(root, "js"))
	if err := os.WriteFile(conf, append(trust, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	// The trust is JSON; NATS configuration takes it, and the lines after it.
	nats := startProc(t, "nats-server", nil, "nats-server", "-c", conf)
	natsURL := "nats://" + natsAddr
	waitFor(t, 30*time.Second, "nats-server listening", func() (bool, string) {
		return tcpOpen(natsAddr), readFile(nats.logPath)
	})

	updates := filepath.Join(root, "updates")
	if err := os.Mkdir(updates, 0o755); err != nil {
		t.Fatal(err)
	}
	webAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for _, s := range []struct {
		name string
		args []string
	}{
		{"enroll", nil},
		{"intake", nil},
		{"catalog", []string{"--updates", updates, "--rescan", "1s"}},
		{"decision", []string{"--public-url", "http://" + webAddr}},
		{"presence", nil},
		{"inventory", nil},
		{"history", nil},
		{"web", []string{"--updates", updates, "--http", webAddr, "--public-url", "http://" + webAddr}},
	} {
		startProc(t, s.name, env, "thinfleet", append([]string{s.name, "--nats-url", natsURL}, s.args...)...)
	}
	ready(t, 60*time.Second, "web /readyz", "http://"+webAddr+"/readyz")
	a := api{base: "http://" + webAddr, token: adminToken}

	startAgent(t, "stock-1", natsURL, filepath.Join(root, "state"))
	waitFor(t, 60*time.Second, "the agent enrolled and alive", a.fleetOn(1, ""))
	writeZip(t, updates, "update-3.0.zip", map[string]string{"name": "Stock", "version": "3.0", "command": "true"}, nil)
	waitFor(t, 60*time.Second, "the agent on 3.0", a.fleetOn(1, "3.0"))
}

// tcpOpen reports whether something accepts connections at addr.
func tcpOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
