package web

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
)

// stream is an open live stream; lines has what it sends, one line at a
// time, and is closed when the stream ends.
type stream struct {
	lines chan string
	close func()
}

func openStream(t *testing.T, p *pageTest, query string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", p.srv.URL+"/live?"+query, nil)
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live?%s: %s %q", query, resp.Status, resp.Header.Get("Content-Type"))
	}
	s := &stream{lines: make(chan string, 100), close: cancel}
	go func() {
		defer close(s.lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(cancel)
	s.expect(t, "retry: 2000", 10*time.Second)
	return s
}

// expect waits for a line, skipping others.
func (s *stream) expect(t *testing.T, line string, within time.Duration) {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("stream ended before %q", line)
			}
			if l == line {
				return
			}
		case <-timeout:
			t.Fatalf("no %q within %s", line, within)
		}
	}
}

// quiet checks that no change comes within d.
func (s *stream) quiet(t *testing.T, d time.Duration, why string) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l := <-s.lines:
			if strings.HasPrefix(l, "event: change") {
				t.Fatalf("a change came: %s", why)
			}
		case <-timeout:
			return
		}
	}
}

func TestLive(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.web.hub.seenEvery = time.Hour // no last-seen batch during the test
	p.device(t, "k1", kiosk("k1", "1.0", true))
	p.device(t, "k2", kiosk("k2", "1.0", true))

	all := openStream(t, p, "topics=devices")
	one := openStream(t, p, "topics=devices,history&device=k1")
	cat := openStream(t, p, "topics=catalog")

	p.device(t, "k1", func(d *fleet.Device) { d.Alive = false })
	all.expect(t, "event: change", 2*time.Second)
	one.expect(t, "event: change", 2*time.Second)

	p.device(t, "k2", func(d *fleet.Device) { d.Alive = false })
	all.expect(t, "event: change", 2*time.Second)
	one.quiet(t, time.Second, "k1's stream heard of k2")

	p.device(t, "k2", func(d *fleet.Device) { d.LastSeen = time.Now() })
	all.quiet(t, time.Second, "a last-seen-only change came at once")

	p.event(t, fleet.Event{Device: "k1", Event: fleet.EventOffered, Version: "2.0"})
	one.expect(t, "event: change", 2*time.Second)
	cat.quiet(t, 100*time.Millisecond, "the catalog stream heard of a device")

	p.catalog(t, fleet.Catalog{Target: "2.0"})
	cat.expect(t, "event: change", 2*time.Second)

	// The page itself follows the store.
	poll.Eventually(t, 5*time.Second, "the clients page shows k1 notAlive", func() error {
		doc := p.page(t, "/clients?alive=notalive", 200)
		if got := strings.Join(texts(doc.Find("table.clients tbody td.id")), " "); got != "k1 k2" {
			return fmt.Errorf("not alive: %q, want k1 k2", got)
		}
		return nil
	})

	// Closing the server ends every stream.
	p.web.Close()
	for _, s := range []*stream{all, one, cat} {
		timeout := time.After(5 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-s.lines:
				if !ok {
					break drain
				}
			case <-timeout:
				t.Fatal("a stream still open 5s after Close")
			}
		}
	}
}

func TestLiveNeedsSession(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	for _, q := range []string{"topics=devices", "topics=nothing", "topics=devices&device=../x"} {
		resp, err := newClient().Get(p.srv.URL + "/live?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("live?%s without a session: %s, want 401", q, resp.Status)
		}
	}
	for _, q := range []string{"topics=nothing", "topics=devices&device=../x"} {
		resp, err := p.client.Get(p.srv.URL + "/live?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("live?%s: %s, want 400", q, resp.Status)
		}
	}
}

// A server whose store connection closes (the process shuts down without
// calling Close) ends its streams instead of holding the HTTP server's
// shutdown up.
func TestLiveEndsWithTheConnection(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	s := openStream(t, p, "topics=devices")
	p.nc.Close()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("the stream is still open 10s after the connection closed")
		}
	}
}
