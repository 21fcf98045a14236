package broker

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/wire"
)

// BenchmarkAgentMemory measures what agents cost the broker in memory:
// THINFLEET_BENCH_AGENTS agents (2,000 unless set), each with its own
// credentials as the enrollment service issues them, connect from a child
// process (so that their client side is not counted), subscribe to their
// offers and send a heartbeat. It reports the broker process's Go heap
// and RSS per agent above the idle baseline. With
// THINFLEET_BENCH_HEAPPROFILE=FILE it writes a heap profile taken with
// the agents connected (every allocation sampled); with
// THINFLEET_BENCH_NOPERMS=1 the agents log in as users without permission
// lists instead, for comparison.
//
//	THINFLEET_BENCH_AGENTS=10000 go test -run '^$' -bench AgentMemory -benchtime 1x ./broker/
func BenchmarkAgentMemory(b *testing.B) {
	if os.Getenv("THINFLEET_BENCH_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation, for exact figures
	}
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("THINFLEET_BENCH_AGENTS")); err == nil && v > 0 {
		n = v
	}
	br, err := Start(Options{
		DataDir: b.TempDir(), Listen: "127.0.0.1:0", ServiceToken: "bench-token", EnrollToken: "enroll",
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Shutdown()
	// The agents' credentials, one line each, for the child.
	creds := filepath.Join(b.TempDir(), "agents")
	f, err := os.Create(creds)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("mem-%05d", i)
		kp, _ := nkeys.CreateUser()
		key, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		signer, account := br.AgentSigner()
		token, err := AgentJWT(signer, account, id, key)
		if os.Getenv("THINFLEET_BENCH_NOPERMS") != "" {
			// For comparison only: users with no permission lists (as
			// the services have), to show what the agents' cost.
			var s []byte
			token, s, err = userJWT(br.keys.app, id)
			seed = s
		}
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintln(f, id, token, string(seed))
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		heap0, rss0 := memNow()
		cmd := exec.Command(os.Args[0], "-test.run=^TestAgentsChild$", "-test.v")
		cmd.Env = append(os.Environ(), "THINFLEET_AGENTS_CHILD="+creds, "THINFLEET_AGENTS_URL="+br.ClientURL())
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		ready := false
		for sc := bufio.NewScanner(stdout); sc.Scan(); {
			if strings.HasPrefix(sc.Text(), "AGENTS READY") {
				ready = true
				break
			}
		}
		if !ready {
			_ = cmd.Wait()
			b.Fatal("the agents' process ended before its agents were ready")
		}
		if got := br.srv.NumClients(); got < n {
			b.Fatalf("%d clients connected, want %d", got, n)
		}
		heap1, rss1 := memNow()
		if path := os.Getenv("THINFLEET_BENCH_HEAPPROFILE"); path != "" {
			if hf, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(hf)
				hf.Close()
			}
		}
		b.ReportMetric(float64(heap1-heap0)/float64(n)/1024, "heap-KiB/agent")
		b.ReportMetric(float64(rss1-rss0)/float64(n)/1024, "rss-KiB/agent")
		b.ReportMetric(float64(rss1)/(1<<20), "rss-MiB")
		stdin.Close()
		_ = cmd.Wait()
	}
}

// memNow is the Go heap in use after a collection, and the process's
// resident memory.
func memNow() (heap, rss uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	data, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			rss = kb << 10
		}
	}
	return ms.HeapInuse, rss
}

// TestAgentsChild is BenchmarkAgentMemory's agents' process; it does
// nothing unless started by it. It connects every agent as
// cmd/thinfleet-agent does, subscribes to its offers, sends a heartbeat,
// says so on stdout and holds the connections until stdin closes.
func TestAgentsChild(t *testing.T) {
	path := os.Getenv("THINFLEET_AGENTS_CHILD")
	if path == "" {
		t.Skip("run by BenchmarkAgentMemory")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	url := os.Getenv("THINFLEET_AGENTS_URL")
	var lines []string
	for line := range strings.Lines(string(data)) {
		lines = append(lines, strings.TrimSpace(line))
	}
	conns := make([]*nats.Conn, len(lines))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var firstErr error
	for i, line := range lines {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f := strings.Fields(line)
			id, userJWT, seed := f[0], f[1], f[2]
			nc, err := nats.Connect(url, nats.UserJWTAndSeed(userJWT, seed), nats.Name(id),
				nats.CustomInboxPrefix(wire.AgentInboxPrefix(id)), nats.NoReconnect())
			if err == nil {
				_, err = nc.Subscribe(wire.OfferSubject(id), func(*nats.Msg) {})
			}
			if err == nil {
				err = nc.Publish(wire.HeartbeatSubject(id), []byte(`{"interval_ms":5000}`))
			}
			if err == nil {
				err = nc.FlushTimeout(30 * time.Second)
			}
			mu.Lock()
			defer mu.Unlock()
			conns[i] = nc
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("agent %s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	fmt.Println("AGENTS READY")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, nc := range conns {
		nc.Close()
	}
}
