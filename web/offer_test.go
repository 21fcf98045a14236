package web

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/downloadlink"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

func postOffer(t *testing.T, p *pageTest, id string) string {
	t.Helper()
	resp, err := p.client.Post(p.srv.URL+"/clients/"+id+"/offer", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("offer %s: %s, want 303", id, resp.Status)
	}
	return resp.Header.Get("Location")
}

func TestOfferAgain(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	r := release("2.0", "kiosk 2.0.zip")
	r.Signature = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==" // 64 bytes, as an ed25519 signature
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{r}, Target: "2.0"})
	p.device(t, "failed", func(d *fleet.Device) {
		kiosk("failed", "1.0", true)(d)
		d.Install = &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "exit status 3"}
	})
	p.device(t, "current", kiosk("current", "2.0", true))

	offers := make(chan *nats.Msg, 4)
	sub, err := p.nc.ChanSubscribe(wire.OfferSubject("failed"), offers)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	if loc := postOffer(t, p, "failed"); loc != "/clients/failed?notice=offered" {
		t.Errorf("offer answered with %q", loc)
	}
	select {
	case m := <-offers:
		o, err := wire.Decode[wire.Offer](m.Data)
		if err != nil {
			t.Fatalf("the offer published is not valid: %v", err)
		}
		if !o.Retry || o.Version != "2.0" || o.URL != "http://fleet.example:8080/downloads/kiosk%202.0.zip" || o.SHA256 != sum || o.Signature != r.Signature {
			t.Errorf("offer = %+v, want a retry of 2.0 from the public URL, with the release's signature", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no offer published within 10s")
	}
	evs, err := p.store.Events(context.Background(), fleet.EventFilter{Device: "failed", Kind: fleet.EventOffered})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Detail != "offered again by an operator" || evs[0].Version != "2.0" {
		t.Errorf("offered events = %+v", evs)
	}
	doc := p.page(t, "/clients/failed?notice=offered", 200)
	if got := doc.Find("p.notice").Text(); got == "" {
		t.Error("no notice after the offer")
	}

	// A device on the target is not offered anything.
	if loc := postOffer(t, p, "current"); loc != "/clients/current?notice=up-to-date" {
		t.Errorf("offer to an up-to-date device answered %q", loc)
	}
	doc = p.page(t, "/clients/current", 200)
	if _, disabled := doc.Find("form.offer button").Attr("disabled"); !disabled {
		t.Error("the offer button is enabled on an up-to-date device")
	}
	if resp, err := p.client.Post(p.srv.URL+"/clients/nobody/offer", "", nil); err != nil || resp.StatusCode != 404 {
		t.Errorf("offer to an unknown device: %v %v", resp.Status, err)
	}
	select {
	case m := <-offers:
		t.Errorf("unexpected offer on %s", m.Subject)
	default:
	}
}

func TestOfferAgainDisabled(t *testing.T) {
	p := newPageTest(t, pageOptions{noConn: true})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("2.0", "u.zip")}, Target: "2.0"})
	p.device(t, "k", kiosk("k", "1.0", true))
	doc := p.page(t, "/clients/k", 200)
	if _, disabled := doc.Find("form.offer button").Attr("disabled"); !disabled {
		t.Error("the offer button is enabled without a connection to publish on")
	}
	if loc := postOffer(t, p, "k"); loc != "/clients/k?notice=no-action" {
		t.Errorf("offer without a connection answered %q", loc)
	}
}

func TestOfferAgainSignsTheLink(t *testing.T) {
	key := []byte("a link key of at least 16 bytes")
	p := newPageTest(t, pageOptions{linkKey: key})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("2.0", "kiosk 2.0.zip")}, Target: "2.0"})
	p.device(t, "k", kiosk("k", "1.0", true))
	offers := make(chan *nats.Msg, 1)
	sub, err := p.nc.ChanSubscribe(wire.OfferSubject("k"), offers)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	postOffer(t, p, "k")
	var o wire.Offer
	select {
	case m := <-offers:
		if o, err = wire.Decode[wire.Offer](m.Data); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no offer published within 10s")
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Host != "fleet.example:8080" || u.Path != "/downloads/kiosk 2.0.zip" {
		t.Fatalf("offer URL %q", o.URL)
	}
	if err := downloadlink.Check(key, "kiosk 2.0.zip", u.Query(), time.Now()); err != nil {
		t.Errorf("offer URL %q: %v", o.URL, err)
	}
	doc := p.page(t, "/downloads", 200)
	href, _ := doc.Find("a[download]").Attr("href")
	if u, err := url.Parse(href); err != nil || downloadlink.Check(key, "kiosk 2.0.zip", u.Query(), time.Now()) != nil {
		t.Errorf("download link %q is not signed: %v", href, err)
	}
}
