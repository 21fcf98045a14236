package e2e

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestPresenceAcrossRestarts runs the broker and the services as separate
// processes, as docker compose does, with agents heartbeating every 5 s
// (so missed heartbeats alone take 15 s to notice). After the broker
// restarts, an agent that dies is notAlive at once, from the broker's
// event; after the broker and presence restart together, an agent that
// died while they were down is notAlive at once, not shown alive until
// its heartbeats are missed.
func TestPresenceAcrossRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	const quick = 5 * time.Second // well under three 5 s intervals
	root := t.TempDir()
	env := []string{
		"THINFLEET_SERVICE_TOKEN=" + clusterServiceToken, "THINFLEET_ADMIN_TOKEN=" + adminToken,
		"THINFLEET_ENROLL_TOKEN=" + enrollToken, "THINFLEET_DOWNLOAD_KEY=" + clusterDownloadKey,
	}
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	opsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	natsURL := "nats://" + natsAddr
	startBroker := func(name string) *proc {
		p := startProc(t, name, env, "thinfleet", "broker", "--data", filepath.Join(root, "broker"), "--nats", natsAddr, "--metrics", opsAddr)
		ready(t, 60*time.Second, name+" /readyz", "http://"+opsAddr+"/readyz")
		return p
	}
	broker := startBroker("broker")
	startPresence := func(name string) *proc {
		return startProc(t, name, env, "thinfleet", "presence", "--nats-url", natsURL)
	}
	presence := startPresence("presence")
	startProc(t, "inventory", env, "thinfleet", "inventory", "--nats-url", natsURL)
	webAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProc(t, "web", env, "thinfleet", "web", "--nats-url", natsURL, "--updates", filepath.Join(root, "updates"),
		"--http", webAddr, "--public-url", "http://"+webAddr)
	ready(t, 60*time.Second, "web /readyz", "http://"+webAddr+"/readyz")
	a := api{base: "http://" + webAddr, token: adminToken}

	ids := []string{"r-1", "r-2", "r-3"}
	agents := map[string]*agent{}
	for _, id := range ids {
		agents[id] = startAgent(t, id, natsURL, filepath.Join(root, "state-"+id), "--heartbeat", "5s")
	}
	aliveAre := func(want map[string]bool) func() (bool, string) {
		return func() (bool, string) {
			ds := a.devices()
			for id, alive := range want {
				if d, ok := a.device(id); !ok || d.Alive != alive {
					return false, showDevices(ds)
				}
			}
			return true, ""
		}
	}
	waitFor(t, 60*time.Second, "three agents alive", aliveAre(map[string]bool{"r-1": true, "r-2": true, "r-3": true}))

	broker.signal(syscall.SIGTERM)
	broker = startBroker("broker-again")
	waitFor(t, 60*time.Second, "three agents alive after the broker restarted", aliveAre(map[string]bool{"r-1": true, "r-2": true, "r-3": true}))
	agents["r-1"].kill()
	took := waitFor(t, quick, "r-1 notAlive after it died, the broker having restarted", aliveAre(map[string]bool{"r-1": false, "r-2": true, "r-3": true}))
	t.Logf("MEASURED: after a broker restart, agent SIGKILL to notAlive: %s", took.Round(10*time.Millisecond))

	broker.signal(syscall.SIGTERM)
	presence.signal(syscall.SIGTERM)
	agents["r-2"].kill() // dies while the server side is down
	broker = startBroker("broker-third")
	presence = startPresence("presence-again")
	took = waitFor(t, quick, "r-2, dead while the server was down, notAlive", func() (bool, string) {
		d, _ := a.device("r-2")
		return !d.Alive, showDevices([]device{d})
	})
	t.Logf("MEASURED: broker and presence restarted to an agent that died meanwhile shown notAlive: %s", took.Round(10*time.Millisecond))
	waitFor(t, 60*time.Second, "r-3 alive again", aliveAre(map[string]bool{"r-1": false, "r-2": false, "r-3": true}))
	_ = broker
}
