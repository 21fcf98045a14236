package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/broker"
)

const (
	clusterServiceToken = "e2e-cluster-service-token"
	clusterDownloadKey  = "e2e-cluster-download-key-0123456789"
)

// proc is a thinfleet process the test started, logging to a file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

func startProc(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, exited: make(chan struct{})}
	p.logPath = filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(filepath.Join(binDir, bin), args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s log:\n%s", name, tail(readFile(p.logPath), 5000))
		}
	})
	return p
}

// signal sends sig and waits for the process to exit.
func (p *proc) signal(sig syscall.Signal) {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
		<-p.exited
	}
}

// ready polls url until it answers 200.
func ready(t *testing.T, timeout time.Duration, what, url string) time.Duration {
	t.Helper()
	return waitFor(t, timeout, what, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
}

// TestCluster runs the broker as three clustered "thinfleet broker"
// processes on loopback, every bucket and stream at three replicas, each
// service as its own process and agents given all three URLs. The node
// leading the agent stream is killed in the middle of a rollout: every
// agent still installs, no history event is lost, presence stays right.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binaries")
	}
	root := t.TempDir()
	updates := filepath.Join(root, "updates")
	if err := os.Mkdir(updates, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"THINFLEET_SERVICE_TOKEN=" + clusterServiceToken, "THINFLEET_ADMIN_TOKEN=" + adminToken,
		"THINFLEET_ENROLL_TOKEN=" + enrollToken, "THINFLEET_DOWNLOAD_KEY=" + clusterDownloadKey,
		"THINFLEET_REPLICAS=3",
	}
	type node struct {
		name, client, ops string
		p                 *proc
	}
	var nodes []*node
	var routes, urls []string
	for i := 1; i <= 3; i++ {
		n := &node{name: fmt.Sprintf("n%d", i), client: fmt.Sprintf("127.0.0.1:%d", freePort(t)), ops: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
		nodes = append(nodes, n)
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		urls = append(urls, "nats://"+n.client)
	}
	start := time.Now()
	for i, n := range nodes {
		n.p = startProc(t, "broker-"+n.name, env, "thinfleet", "broker",
			"--data", filepath.Join(root, n.name), "--nats", n.client, "--server-name", n.name,
			"--cluster", routes[i], "--routes", strings.Join(routes, ","), "--metrics", n.ops)
	}
	for _, n := range nodes {
		ready(t, 60*time.Second, n.name+" /readyz", "http://"+n.ops+"/readyz")
	}
	t.Logf("MEASURED: three broker processes started to every node ready: %s", time.Since(start).Round(10*time.Millisecond))

	natsURL := strings.Join(urls, ",")
	webAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	svc := map[string]*proc{}
	for _, s := range []struct {
		name string
		args []string
	}{
		{"catalog", []string{"--updates", updates, "--rescan", "1s"}},
		{"decision", []string{"--public-url", "http://" + webAddr}},
		{"presence", nil},
		{"inventory", nil},
		{"history", nil},
		{"web", []string{"--updates", updates, "--http", webAddr, "--public-url", "http://" + webAddr}},
	} {
		svc[s.name] = startProc(t, s.name, env, "thinfleet", append([]string{s.name, "--nats-url", natsURL}, s.args...)...)
	}
	ready(t, 60*time.Second, "web /readyz", "http://"+webAddr+"/readyz")
	a := api{base: "http://" + webAddr, token: adminToken}

	ids := []string{"c-agent-1", "c-agent-2", "c-agent-3", "c-agent-4"}
	agents := map[string]*agent{}
	for _, id := range ids {
		agents[id] = startAgent(t, id, natsURL, filepath.Join(root, "state-"+id))
	}
	waitFor(t, 60*time.Second, "four agents alive", func() (bool, string) {
		ds := a.devices()
		alive := 0
		for _, d := range ds {
			if d.Alive {
				alive++
			}
		}
		return len(ds) == len(ids) && alive == len(ids), showDevices(ds)
	})
	// Every resource is at three replicas.
	js := clusterJetStream(t, natsURL)
	for _, name := range []string{"THINFLEET_AGENT", "THINFLEET_HISTORY", "KV_thinfleet_devices", "KV_thinfleet_catalog"} {
		info, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := info.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}

	// The rollout: installs take two seconds, long enough to kill a node
	// while they run.
	writeZip(t, updates, "update-1.0.0.zip",
		map[string]string{"name": "Update 1", "version": "1.0.0", "command": "sleep 2; echo done"}, nil)
	waitFor(t, 60*time.Second, "a rollout in flight", func() (bool, string) {
		var evs []event
		_ = a.get("/api/v1/history?event=installing", &evs)
		return len(evs) > 0, fmt.Sprint(len(evs), " installing")
	})
	leader := streamLeader(t, js, "THINFLEET_AGENT")
	var victim *node
	for _, n := range nodes {
		if n.name == leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("agent stream leader %q is not a node", leader)
	}
	killed := time.Now()
	victim.p.signal(syscall.SIGKILL)
	t.Logf("killed %s, the agent stream's leader, mid-rollout", victim.name)
	failover := ready(t, 60*time.Second, "web /readyz after the node died", "http://"+webAddr+"/readyz")
	waitFor(t, 60*time.Second, "a new agent stream leader", func() (bool, string) {
		l := streamLeader(t, js, "THINFLEET_AGENT")
		return l != "" && l != victim.name, l
	})
	t.Logf("MEASURED: node SIGKILL to a new agent stream leader: %s (web /readyz after %s)",
		time.Since(killed).Round(10*time.Millisecond), failover.Round(10*time.Millisecond))
	took := waitFor(t, 90*time.Second, "every agent alive on 1.0.0", a.fleetOn(len(ids), "1.0.0"))
	t.Logf("MEASURED: node SIGKILL to every agent alive on 1.0.0: %s", (time.Since(killed)).Round(10*time.Millisecond))
	_ = took

	t.Run("no history event lost", func(t *testing.T) {
		counts := func(id string) map[string]int {
			var evs []event
			if err := a.get("/api/v1/history?device="+id+"&version=1.0.0", &evs); err != nil {
				t.Logf("history of %s: %v", id, err)
			}
			n := map[string]int{}
			for _, e := range evs {
				n[e.Event]++
			}
			return n
		}
		// The history service retries what the failover interrupted, so
		// the last steps may land a moment after the devices' versions.
		waitFor(t, 60*time.Second, "every step of every install in the history", func() (bool, string) {
			for _, id := range ids {
				n := counts(id)
				for _, kind := range []string{"offered", "downloading", "verifying", "installing", "installed"} {
					if n[kind] == 0 {
						return false, fmt.Sprintf("%s: no %s event for 1.0.0; events: %v", id, kind, n)
					}
				}
			}
			return true, ""
		})
		for _, id := range ids {
			if n := counts(id); n["installed"] != 1 {
				t.Errorf("%s: %d installed events for 1.0.0, want exactly 1", id, n["installed"])
			}
		}
	})

	t.Run("presence stays correct", func(t *testing.T) {
		agents[ids[0]].kill()
		gone := waitFor(t, 3*time.Second+3*time.Second, ids[0]+" notAlive", func() (bool, string) {
			d, _ := a.device(ids[0])
			return !d.Alive, showDevices([]device{d})
		})
		t.Logf("MEASURED: agent SIGKILL to notAlive on the two-node cluster: %s", gone.Round(10*time.Millisecond))
		for _, id := range ids[1:] {
			if d, _ := a.device(id); !d.Alive {
				t.Errorf("%s notAlive on the two remaining nodes", id)
			}
		}
	})

	t.Run("the node comes back", func(t *testing.T) {
		i := strings.TrimPrefix(victim.name, "n")
		var idx int
		fmt.Sscan(i, &idx)
		back := time.Now()
		victim.p = startProc(t, "broker-"+victim.name+"-again", env, "thinfleet", "broker",
			"--data", filepath.Join(root, victim.name), "--nats", victim.client, "--server-name", victim.name,
			"--cluster", routes[idx-1], "--routes", strings.Join(routes, ","), "--metrics", victim.ops)
		ready(t, 60*time.Second, victim.name+" /readyz again", "http://"+victim.ops+"/readyz")
		t.Logf("MEASURED: killed node restarted to ready: %s", time.Since(back).Round(10*time.Millisecond))
		writeZip(t, updates, "update-1.1.0.zip",
			map[string]string{"name": "Update 1.1", "version": "1.1.0", "command": "echo done"}, nil)
		waitFor(t, 60*time.Second, "the live agents on 1.1.0", func() (bool, string) {
			ds := a.devices()
			on := 0
			for _, d := range ds {
				if d.Alive && d.Version == "1.1.0" {
					on++
				}
			}
			return on == len(ids)-1, showDevices(ds)
		})
	})
}

// clusterJetStream connects to the cluster as a service would.
func clusterJetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	creds, err := broker.ServiceCredentials(clusterServiceToken, "e2e-observer", false)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, creds, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// streamLeader names the server leading a stream, as any client may ask.
func streamLeader(t *testing.T, js jetstream.JetStream, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return ""
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}
