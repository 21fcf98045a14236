package web

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// fleetOf writes n devices into p's store, as the services would: a third
// notAlive, three versions, a few installs under way.
func fleetOf(b *testing.B, p *pageTest, n int) {
	b.Helper()
	p.catalog(b, fleet.Catalog{Releases: []fleet.Release{release("1.10", "u.zip")}, Target: "1.10"})
	var wg sync.WaitGroup
	ids := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range ids {
				id := fmt.Sprintf("kiosk-%05d", i)
				p.device(b, id, func(d *fleet.Device) {
					kiosk(id, []string{"1.9", "1.10", "1.8"}[i%3], i%3 != 2)(d)
					d.Hardware.MemoryTotal = uint64(4+i%5) << 30
					d.LastSeen = time.Now().Add(-time.Duration(i) * time.Second)
				})
			}
		})
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
}

// BenchmarkClientsPage renders the Clients page on the server with 10,000
// devices in a real store: the first page as it opens, and a search,
// filter and sort over all of them. BENCHMARKS.md keeps the figures.
func BenchmarkClientsPage(b *testing.B) {
	p := newPageTest(b, pageOptions{})
	fleetOf(b, p, 10000)
	u, _ := url.Parse(p.srv.URL)
	cookie := p.client.Jar.Cookies(u)[0]
	h := p.web.Handler()
	for _, query := range []string{"", "?sort=-seen&page=7", "?q=kiosk-0&alive=alive&outdated=1&sort=-memory"} {
		b.Run("query="+query, func(b *testing.B) {
			get := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest("GET", "/clients"+query, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			if rec := get(); rec.Code != http.StatusOK || rec.Body.Len() < 10000 {
				b.Fatalf("GET /clients%s: %d, %d bytes", query, rec.Code, rec.Body.Len())
			}
			b.ResetTimer()
			for b.Loop() {
				get()
			}
		})
	}
}

// BenchmarkClientsPageCold is the first Clients page of a server just
// started on a store of 10,000 devices: it waits for them to load.
func BenchmarkClientsPageCold(b *testing.B) {
	p := newPageTest(b, pageOptions{})
	fleetOf(b, p, 10000)
	u, _ := url.Parse(p.srv.URL)
	cookie := p.client.Jar.Cookies(u)[0]
	for b.Loop() {
		s, err := New(Options{Log: slog.New(slog.DiscardHandler), Store: p.store, UpdatesDir: p.updates, AdminToken: testToken})
		if err != nil {
			b.Fatal(err)
		}
		// The session is in the store: the new server knows it.
		req := httptest.NewRequest("GET", "/clients", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET /clients: %d", rec.Code)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
