package web

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/broker"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// pageTest is the web server over a real embedded broker's state, with a
// browser-like client that has signed in.
type pageTest struct {
	broker  *broker.Broker
	store   *store.Store
	nc      *nats.Conn
	web     *Server
	srv     *httptest.Server
	client  *http.Client // signed in, follows no redirects
	updates string
}

type pageOptions struct {
	noConn  bool   // leave Options.Conn nil: no offer action
	linkKey []byte // sign download links with it
}

func newPageTest(t testing.TB, po pageOptions) *pageTest {
	t.Helper()
	b, nc, store := startStore(t)
	p := &pageTest{broker: b, store: store, nc: nc, updates: t.TempDir()}
	opts := Options{
		Log: slog.New(slog.DiscardHandler), Store: store, UpdatesDir: p.updates,
		AdminToken: testToken, PublicURL: "http://fleet.example:8080", Conn: nc,
	}
	if po.noConn {
		opts.Conn = nil
	}
	opts.LinkKey = po.linkKey
	var err error
	p.web, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewServer(p.web.Handler())
	t.Cleanup(p.srv.Close)
	t.Cleanup(p.web.Close) // before the server closes: it ends the live streams
	p.client = p.signIn(t)
	return p
}

// newClient is a client with a cookie jar that shows redirects instead of
// following them.
func newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (p *pageTest) signIn(t testing.TB) *http.Client {
	t.Helper()
	c := newClient()
	resp, err := c.PostForm(p.srv.URL+"/login", url.Values{"token": {testToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %s, want 303", resp.Status)
	}
	return c
}

// page fetches a page as the signed-in client and parses it; it fails the
// test unless the status is want.
func (p *pageTest) page(t testing.TB, path string, want int) *goquery.Document {
	t.Helper()
	resp, err := p.client.Get(p.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %s, want %d; body:\n%s", path, resp.Status, want, body)
	}
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// device writes a device record through the store, as the services do.
func (p *pageTest) device(t testing.TB, id string, fn func(d *fleet.Device)) {
	t.Helper()
	if _, err := p.store.UpdateDevice(context.Background(), id, func(d *fleet.Device) error { fn(d); return nil }); err != nil {
		t.Fatal(err)
	}
}

func (p *pageTest) event(t testing.TB, e fleet.Event) {
	t.Helper()
	if err := p.store.AppendEvent(context.Background(), e, ""); err != nil {
		t.Fatal(err)
	}
}

func (p *pageTest) catalog(t testing.TB, c fleet.Catalog) {
	t.Helper()
	if err := p.store.PutCatalog(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// kiosk is a plausible device record.
func kiosk(id, version string, alive bool) func(d *fleet.Device) {
	return func(d *fleet.Device) {
		d.Hostname, d.Version, d.Alive = id+".local", version, alive
		d.LastSeen, d.FirstSeen = time.Now().Add(-12*time.Second), time.Now().Add(-time.Hour)
		d.Hardware = wire.Hardware{
			Hostname: id + ".local", OS: "linux", Platform: "debian", PlatformVersion: "12.7", Arch: "amd64",
			KernelVersion: "6.1.0-26-amd64", CPUModel: "Intel(R) Celeron(R) J4125 CPU @ 2.00GHz", CPUCores: 4, CPUThreads: 4,
			MemoryTotal: 8 << 30,
			Disks:       []wire.Disk{{Mount: "/", FSType: "ext4", Total: 120 << 30, Free: 80 << 30}},
			Interfaces: []wire.Interface{
				{Name: "lo", Addresses: []string{"127.0.0.1/8", "::1/128"}},
				{Name: "eth0", MAC: "52:54:00:12:34:56", Addresses: []string{"192.168.10.21/24", "fe80::5054:ff:fe12:3456/64"}},
			},
		}
	}
}

// texts is the trimmed text of each node of sel.
func texts(sel *goquery.Selection) []string {
	var out []string
	sel.Each(func(_ int, s *goquery.Selection) { out = append(out, strings.Join(strings.Fields(s.Text()), " ")) })
	return out
}

// rows is each table row of sel as its cells' texts joined by "|".
func rows(sel *goquery.Selection) []string {
	var out []string
	sel.Each(func(_ int, tr *goquery.Selection) { out = append(out, strings.Join(texts(tr.Find("td")), "|")) })
	return out
}
