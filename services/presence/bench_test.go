package presence

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/broker/brokertest"
	"github.com/thinfleet/thinfleet/ratelimit"
	"github.com/thinfleet/thinfleet/wire"
)

// benchPresence runs presence on a real broker (with its fsynced
// JetStream, the system account's events, and agents logging in with
// their own credentials) until the benchmark ends.
func benchPresence(b *testing.B) (*brokertest.Server, *Service) {
	b.Helper()
	srv := brokertest.Start(b, brokertest.Options{EnrollToken: "bench-enroll"})
	nc, err := srv.B.ConnectService("thinfleet-presence")
	if err != nil {
		b.Fatal(err)
	}
	sys, err := srv.B.ConnectSystem("thinfleet-presence-events")
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Log: slog.New(slog.DiscardHandler), Store: srv.Store, Conn: nc, SysConn: sys, Account: srv.B.AppAccountKey()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done; nc.Close(); sys.Close() })
	return srv, s
}

// agents connects n agents with credentials of their own, as the
// enrollment service issues them.
func agents(b *testing.B, srv *brokertest.Server, prefix string, n int) ([]string, []*nats.Conn) {
	b.Helper()
	signer, account := srv.B.AgentSigner()
	ids := make([]string, n)
	conns := make([]*nats.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		ids[i] = fmt.Sprintf("%s-%05d", prefix, i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			kp, _ := nkeys.CreateUser()
			key, _ := kp.PublicKey()
			seed, _ := kp.Seed()
			jwt, err := broker.AgentJWT(signer, account, ids[i], key)
			if err == nil {
				conns[i], err = nats.Connect(srv.URL, nats.UserJWTAndSeed(jwt, string(seed)), nats.Name(ids[i]),
					nats.CustomInboxPrefix(wire.AgentInboxPrefix(ids[i])), nats.NoReconnect())
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	return ids, conns
}

// waitState polls presence's memory until every device of ids is alive
// (or not) and written so, with no history event still on its way, or
// fails after a minute.
func waitState(b *testing.B, s *Service, ids []string, alive bool) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		left := 0
		s.mu.Lock()
		for _, id := range ids {
			d := s.devices[id]
			if d == nil || d.alive != alive || d.recorded != alive || d.writing {
				left++
			}
		}
		s.mu.Unlock()
		if left == 0 && s.appending.Load() == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d devices not recorded alive=%v after a minute", left, len(ids), alive)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reportCPU reports the process's CPU time (user and system, every
// goroutine: presence's and, in process, the broker's) per op from here
// to the end of b: on a shared machine wall time per op says more of the
// neighbours than of the code.
func reportCPU(b *testing.B) {
	start := cpuTime()
	b.Cleanup(func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	})
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHeartbeat is one heartbeat taken in memory: the callback's
// parse, rate check, decode and state update, over 10,000 devices.
func BenchmarkHeartbeat(b *testing.B) {
	s := &Service{
		log: slog.New(slog.DiscardHandler), wake: make(chan struct{}, 1),
		devices: map[string]*device{}, dirty: map[string]struct{}{}, heard: map[string]struct{}{},
	}
	const n = 10_000
	msgs := make([]*nats.Msg, n)
	for i := range msgs {
		msgs[i] = &nats.Msg{Subject: wire.HeartbeatSubject(fmt.Sprintf("device-%05d", i)), Data: []byte(`{"interval_ms":5000,"seq":12}`)}
	}
	// The rate check costs what it does in service, but lets every
	// heartbeat through, as a fleet on 5s intervals does.
	s.limiter = ratelimit.New(1e9, 1e9)
	b.ReportAllocs()
	reportCPU(b)
	for i := 0; b.Loop(); i++ {
		s.heartbeat(msgs[i%n])
	}
}

// BenchmarkHeartbeatEndToEnd is a heartbeat from an agent's connection
// to presence's state: publish, broker, presence's callback. "latency"
// waits for each before the next; "throughput" sends 10,000 agents'
// heartbeats back to back and waits for the last.
func BenchmarkHeartbeatEndToEnd(b *testing.B) {
	srv, s := benchPresence(b)
	ids, conns := agents(b, srv, "e2e", 100)
	data := []byte(`{"interval_ms":5000}`)
	for i := range ids {
		_ = conns[i].Publish(wire.HeartbeatSubject(ids[i]), data)
	}
	waitState(b, s, ids, true)
	b.Run("latency", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			before := s.handled.Load()
			_ = conns[i%len(conns)].Publish(wire.HeartbeatSubject(ids[i%len(ids)]), data)
			for s.handled.Load() == before {
			}
		}
	})
	b.Run("throughput", func(b *testing.B) {
		// One connection sends for all: a service connection may use any
		// id, and the limiter sees a fleet of 100,000 devices.
		nc := srv.Conn
		start := s.handled.Load()
		b.ResetTimer()
		reportCPU(b)
		for i := range b.N {
			_ = nc.Publish(wire.HeartbeatSubject(fmt.Sprintf("tp-%06d", i%100_000)), data)
		}
		deadline := time.Now().Add(time.Minute)
		for s.handled.Load() < start+uint64(b.N) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d heartbeats taken after a minute", s.handled.Load()-start, b.N)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
}

// BenchmarkMassDisconnect: 1,000 agents, alive and recorded so, close
// their connections at once; one op is the time until presence has every
// one of them recorded notAlive in the store, with its event appended
// (last-event-s/op: until presence had the broker's last disconnect event).
func BenchmarkMassDisconnect(b *testing.B) {
	srv, s := benchPresence(b)
	data := []byte(`{"interval_ms":60000}`)
	var cpuUsed, toEvents time.Duration
	for round := 0; b.Loop(); round++ {
		b.StopTimer()
		ids, conns := agents(b, srv, fmt.Sprintf("m%d", round), 1000)
		for i := range ids {
			_ = conns[i].Publish(wire.HeartbeatSubject(ids[i]), data)
		}
		waitState(b, s, ids, true)
		b.StartTimer()
		cpu, start := cpuTime(), time.Now()
		var wg sync.WaitGroup
		for _, nc := range conns {
			wg.Add(1)
			go func() { defer wg.Done(); nc.Close() }()
		}
		wg.Wait()
		waitState(b, s, ids, false)
		cpuUsed += cpuTime() - cpu
		s.mu.Lock()
		var last time.Time
		for _, id := range ids {
			if at := s.devices[id].closedAt; at.After(last) {
				last = at
			}
		}
		s.mu.Unlock()
		toEvents += last.Sub(start)
	}
	b.ReportMetric(cpuUsed.Seconds()/float64(b.N), "cpu-s/op")
	// How much of an op is the broker telling presence, before any write.
	b.ReportMetric(toEvents.Seconds()/float64(b.N), "last-event-s/op")
}

// BenchmarkMassSilence: 1,000 agents on 1s heartbeats stop heartbeating
// at once, their connections open; one op is the time from their last
// heartbeat until every one is recorded notAlive. The goal is three
// intervals plus a second.
func BenchmarkMassSilence(b *testing.B) {
	srv, s := benchPresence(b)
	data := []byte(`{"interval_ms":1000}`)
	for round := 0; b.Loop(); round++ {
		b.StopTimer()
		ids, conns := agents(b, srv, fmt.Sprintf("s%d", round), 1000)
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				for i := range ids {
					_ = conns[i].Publish(wire.HeartbeatSubject(ids[i]), data)
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		waitState(b, s, ids, true)
		b.StartTimer()
		close(stop)
		<-stopped
		waitState(b, s, ids, false)
		b.StopTimer()
		for _, nc := range conns {
			nc.Close()
		}
		b.StartTimer()
	}
}
