package agent

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thinfleet/thinfleet/broker/brokertest"
	fleetstore "github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// This file is the server side of the tests: a real NATS server with
// JetStream, the broker's permissions for agents and a stream keeping what
// agents report. The update zips and their HTTP server are in
// zips_test.go.

const (
	testToken  = "enroll-secret"
	streamName = fleetstore.AgentStream
)

// fleet is a running NATS server and a service connection to it.
type fleet struct {
	t        *testing.T
	srv      *brokertest.Server
	port     int
	storeDir string
	nc       *nats.Conn
	js       jetstream.JetStream

	mu   sync.Mutex
	next uint64   // next stream sequence to read
	msgs []*jsMsg // every message read from the stream, in order
}

type jsMsg struct {
	subject string
	data    []byte
}

// startFleet starts a NATS server on port (-1: any) with the stream.
func startFleet(t *testing.T, port int) *fleet {
	t.Helper()
	f := &fleet{t: t, port: port, storeDir: t.TempDir(), next: 1}
	f.start()
	t.Cleanup(f.stop)
	return f
}

func (f *fleet) start() {
	f.t.Helper()
	// The real broker: thinfleet's accounts, the agent permissions the
	// broker enforces, and enrollment.
	f.srv = brokertest.Start(f.t, brokertest.Options{Dir: f.storeDir, Port: max(f.port, 0), EnrollToken: testToken})
	f.port = f.srv.Port // the same port after a restart
	f.nc = f.srv.Conn
	var err error
	if f.js, err = jetstream.New(f.nc); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) stop() { f.srv.Stop() }

// restart stops the server and starts it again on the same port and store.
func (f *fleet) restart() {
	f.stop()
	f.start()
}

func (f *fleet) url() string { return f.srv.URL }

// offer sends an offer to device id, as the decision service does.
func (f *fleet) offer(id string, o wire.Offer) {
	f.t.Helper()
	data, _ := json.Marshal(o)
	if err := f.nc.Publish(wire.OfferSubject(id), data); err != nil {
		f.t.Fatalf("publish offer: %v", err)
	}
	if err := f.nc.Flush(); err != nil {
		f.t.Fatal(err)
	}
}

// read returns every message stored in the stream so far.
func (f *fleet) read() []*jsMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, streamName)
	if err != nil {
		f.t.Logf("stream: %v", err)
		return f.msgs
	}
	for {
		m, err := s.GetMsg(ctx, f.next)
		if err != nil {
			return f.msgs // no message at f.next yet
		}
		// The intake stores an agent's message under a prefix of its own.
		subject, _ := strings.CutPrefix(m.Subject, fleetstore.IntakePrefix)
		f.msgs = append(f.msgs, &jsMsg{subject: subject, data: m.Data})
		f.next++
	}
}

// decodeAll decodes the stored messages on subject.
func decodeAll[T wire.Message](f *fleet, subject string) []T {
	var out []T
	for _, m := range f.read() {
		if m.subject != subject {
			continue
		}
		v, err := wire.Decode[T](m.data)
		if err != nil {
			f.t.Errorf("invalid message on %s: %v: %s", subject, err, m.data)
			continue
		}
		out = append(out, v)
	}
	return out
}

func (f *fleet) statuses(id string) []wire.Status {
	return decodeAll[wire.Status](f, wire.StatusSubject(id))
}

func (f *fleet) versions(id string) []wire.VersionInstalled {
	return decodeAll[wire.VersionInstalled](f, wire.VersionInstalledSubject(id))
}

// steps lists the statuses of version as "state" words, progress ones
// left out.
func steps(ss []wire.Status, version string) []string {
	var out []string
	for _, s := range ss {
		if s.Version == version && !s.Progress {
			out = append(out, string(s.State))
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes; cond returns
// what it saw, for the failure message.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	// A minute: a generous bound for a loaded machine; a passing run
	// returns as soon as cond holds.
	deadline := time.Now().Add(time.Minute)
	var seen string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, seen = cond(); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within a minute; last seen: %s", what, seen)
}
