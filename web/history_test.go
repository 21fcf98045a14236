package web

import (
	"crypto/sha256"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"github.com/thinfleet/thinfleet/fleet"
)

func TestHistoryPage(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	// 120 events: versions 1..120; device a has the odd ones, b the even;
	// every tenth is a failure.
	for i := 1; i <= 120; i++ {
		dev, kind := "a", fleet.EventInstalled
		if i%2 == 0 {
			dev = "b"
		}
		if i%10 == 0 {
			kind = fleet.EventFailed
		}
		p.event(t, fleet.Event{Device: dev, Event: kind, Version: fmt.Sprintf("1.%d", i), Detail: fmt.Sprint("event ", i)})
	}
	versions := func(doc *goquery.Document) []string {
		return texts(doc.Find("#events tbody tr td:nth-child(4)"))
	}

	doc := p.page(t, "/history", 200)
	got := versions(doc)
	if len(got) != 50 || got[0] != "1.120" || got[49] != "1.71" {
		t.Fatalf("first page: %d events, %v … %v; want 50 from 1.120 down", len(got), got[:min(3, len(got))], got[max(0, len(got)-1):])
	}
	if doc.Find(`a[href^="/history?before="]`).Length() != 1 {
		t.Error("first page has no link to older events")
	}
	older, _ := doc.Find(`a[rel="next"]`).Attr("href")
	doc = p.page(t, older, 200)
	if got := versions(doc); len(got) != 50 || got[0] != "1.70" {
		t.Errorf("second page starts %v, want 1.70", got[:min(1, len(got))])
	}
	if newest, _ := doc.Find(`nav.pager a`).First().Attr("href"); newest != "/history" {
		t.Errorf("second page's first link = %q, want /history", newest)
	}
	if live, _ := doc.Find("body").Attr("data-live"); live != "" {
		t.Errorf("an older page follows along live: %q", live)
	}
	older, _ = doc.Find(`a[rel="next"]`).Attr("href")
	doc = p.page(t, older, 200)
	if got := versions(doc); len(got) != 20 || got[19] != "1.1" || doc.Find(`a[rel="next"]`).Length() != 0 {
		t.Errorf("last page: %d events ending %v, want 20 ending 1.1 and no older link", len(got), got[max(0, len(got)-1):])
	}

	tests := []struct {
		query string
		want  string // the versions shown, newest first
	}{
		{"device=b&event=failed", "1.120 1.110 1.100 1.90 1.80 1.70 1.60 1.50 1.40 1.30 1.20 1.10"},
		{"device=a&version=1.7", "1.7"},
		{"event=failed&version=1.50", "1.50"},
		{"device=a&event=failed", ""},
		{"device=nobody", ""},
	}
	for _, tt := range tests {
		doc := p.page(t, "/history?"+tt.query, 200)
		if got := strings.Join(versions(doc), " "); got != tt.want {
			t.Errorf("history?%s = %q, want %q", tt.query, got, tt.want)
		}
		q, _ := url.ParseQuery(tt.query)
		if v, _ := doc.Find(`input[name="device"]`).Attr("value"); v != q.Get("device") {
			t.Errorf("history?%s: device field %q", tt.query, v)
		}
		if v, _ := doc.Find(`select[name="event"] option[selected]`).Attr("value"); v != q.Get("event") {
			t.Errorf("history?%s: event selected %q", tt.query, v)
		}
	}
	doc = p.page(t, "/history?device=%3Cscript%3E", 400)
	if doc.Find("p.error").Length() != 1 {
		t.Error("a bad device id shows no error")
	}
}

func TestUpdatesAndDownloadsPages(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	zip := []byte("PK\x03\x04 not really a zip, but bytes to check")
	file := "kiosk app 2.0.zip" // a space, to see the quoting
	if err := os.WriteFile(filepath.Join(p.updates, file), zip, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := fmt.Sprintf("%x", sha256Sum(zip))
	r20 := release("2.0", file)
	r20.SHA256, r20.Size, r20.SignatureState = sum, int64(len(zip)), fleet.SignatureVerified
	p.catalog(t, fleet.Catalog{
		Releases:     []fleet.Release{r20, release("1.9", "u-1.9.zip")},
		Refused:      []fleet.Refused{{File: "broken.zip", Reason: "manifest.json: missing version"}},
		Target:       "2.0",
		TargetReason: "the newest valid version",
	})
	p.device(t, "a", kiosk("a", "1.9", true))
	p.device(t, "b", kiosk("b", "1.9", true))
	p.device(t, "c", kiosk("c", "1.8", true))

	doc := p.page(t, "/updates", 200)
	if got := texts(doc.Find("#target p")); len(got) < 2 || !strings.Contains(got[0], "2.0") || got[1] != "Why: the newest valid version" {
		t.Errorf("target = %q", got)
	}
	got := rows(doc.Find("#releases tbody tr"))
	want := []string{
		"Kiosk app 2.0 kiosk app 2.0.zip|2.0 target|" + fmt.Sprint(len(zip)) + " B|" + sum + "|sh install.sh|1 h ago|verified|0",
		"Kiosk app 1.9 u-1.9.zip|1.9|3.0 MiB|" + strings.Repeat("ab", 32) + "|sh install.sh|1 h ago|unsigned|2",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("releases:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := texts(doc.Find("#refused li")); len(got) != 1 || !strings.Contains(got[0], "broken.zip: manifest.json: missing version") {
		t.Errorf("refused = %q", got)
	}
	if got := texts(doc.Find("#versions svg text")); strings.Join(got, " ") != "1.9 2 1.8 1" {
		t.Errorf("devices per version = %q", got)
	}

	doc = p.page(t, "/downloads", 200)
	card := doc.Find("article.download").First()
	href, _ := card.Find("a[download]").Attr("href")
	if href != "http://fleet.example:8080/downloads/kiosk%20app%202.0.zip" {
		t.Errorf("download link = %q", href)
	}
	lines := texts(card.Find(".command code"))
	if len(lines) != 2 || lines[0] != "curl -fLo 'kiosk app 2.0.zip' http://fleet.example:8080/downloads/kiosk%20app%202.0.zip" {
		t.Fatalf("commands = %q", lines)
	}
	// The verify line works: run it where the file is.
	out, err := exec.Command("sh", "-c", "cd "+shellQuoteTest(p.updates)+" && "+lines[1]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), file+": OK") {
		t.Errorf("verify line %q: %v, %s", lines[1], err, out)
	}
}

func shellQuoteTest(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
