package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"github.com/thinfleet/thinfleet/fleet"
)

func TestClientsPage(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("1.10", "u.zip")}, Target: "1.10"})
	// 120 devices: every third notAlive; versions 1.9, 1.10, none in turn;
	// memory grows with the number.
	for i := range 120 {
		id := fmt.Sprintf("kiosk-%03d", i)
		version := []string{"1.9", "1.10", ""}[i%3]
		p.device(t, id, func(d *fleet.Device) {
			kiosk(id, version, i%3 != 1)(d)
			d.Hostname = fmt.Sprintf("shop-%03d.example", 119-i)
			d.Hardware.MemoryTotal = uint64(i+1) << 30
			d.LastSeen = time.Now().Add(-time.Duration(i) * time.Minute)
		})
	}
	tests := []struct {
		query    string
		count    int      // rows shown
		first    []string // the first ids shown
		matching string   // the count line
	}{
		{"", 50, []string{"kiosk-000", "kiosk-001"}, "120 devices."},
		{"?page=3", 20, []string{"kiosk-100"}, "120 devices."},
		{"?page=99", 20, []string{"kiosk-100"}, "120 devices."},
		{"?q=KIOSK-01", 10, []string{"kiosk-010", "kiosk-011"}, "10 of 120 devices match."},
		{"?q=shop-119", 1, []string{"kiosk-000"}, "1 of 120 devices match."},
		{"?alive=notalive", 40, []string{"kiosk-001", "kiosk-004"}, "40 of 120 devices match."},
		{"?alive=alive&version=1.9", 40, []string{"kiosk-000", "kiosk-003"}, "40 of 120 devices match."},
		{"?version=none", 40, []string{"kiosk-002"}, "40 of 120 devices match."},
		{"?outdated=1", 50, []string{"kiosk-000", "kiosk-002", "kiosk-003"}, "80 of 120 devices match."},
		{"?sort=-memory", 50, []string{"kiosk-119", "kiosk-118"}, "120 devices."},
		{"?sort=hostname", 50, []string{"kiosk-119", "kiosk-118"}, "120 devices."},
		{"?sort=seen", 50, []string{"kiosk-119"}, "120 devices."},
		{"?sort=-version", 50, []string{"kiosk-001", "kiosk-004"}, "120 devices."},
		{"?sort=version&per=10&page=5", 10, []string{"kiosk-000", "kiosk-003"}, "120 devices."},
		{"?sort=status", 50, []string{"kiosk-001"}, "120 devices."},
		{"?q=nothing-like-this", 0, nil, "0 of 120 devices match."},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			doc := p.page(t, "/clients"+tt.query, 200)
			var ids []string
			doc.Find("table.clients tbody tr td.id a").Each(func(_ int, s *goquery.Selection) { ids = append(ids, s.Text()) })
			if len(ids) != tt.count {
				t.Errorf("%d rows, want %d", len(ids), tt.count)
			}
			for i, want := range tt.first {
				if i >= len(ids) || ids[i] != want {
					t.Errorf("rows start %v, want %v", ids[:min(len(ids), 5)], tt.first)
					break
				}
			}
			if got := strings.Join(strings.Fields(doc.Find("#clients > p.muted").First().Text()), " "); !strings.HasPrefix(got, tt.matching) {
				t.Errorf("count line %q, want it to start %q", got, tt.matching)
			}
		})
	}

	doc := p.page(t, "/clients?alive=alive&sort=-memory&page=2", 200)
	// A sort link keeps the filters, starts again at page 1, and turns the
	// current column's order round.
	if href, _ := doc.Find(`th[aria-sort="descending"] a`).Attr("href"); href != "/clients?alive=alive&sort=memory" {
		t.Errorf("current column's link = %q", href)
	}
	if href, _ := doc.Find(`a[rel="next"]`).Attr("href"); href != "/clients?alive=alive&page=3&sort=-memory" && href != "" {
		t.Errorf("next page link = %q", href)
	}
	if href, _ := doc.Find(`a[rel="prev"]`).Attr("href"); href != "/clients?alive=alive&sort=-memory" {
		t.Errorf("previous page link = %q", href)
	}

	doc = p.page(t, "/clients?q=kiosk-05", 200)
	for id, want := range map[string]string{
		"kiosk-057": "|kiosk-057|shop-062.example|linux debian 12.7|Intel(R) Celeron(R) J4125 CPU @ 2.00GHz 4 cores|58.0 GiB|120 GiB 80.0 GiB free|192.168.10.21|1.9 outdated|alive|57 min ago",
		"kiosk-058": "|kiosk-058|shop-061.example|linux debian 12.7|Intel(R) Celeron(R) J4125 CPU @ 2.00GHz 4 cores|59.0 GiB|120 GiB 80.0 GiB free|192.168.10.21|1.10 up to date|notAlive|58 min ago",
		"kiosk-059": "|kiosk-059|shop-060.example|linux debian 12.7|Intel(R) Celeron(R) J4125 CPU @ 2.00GHz 4 cores|60.0 GiB|120 GiB 80.0 GiB free|192.168.10.21|none outdated|alive|59 min ago",
	} {
		if got := rows(doc.Find("#device-" + id)); len(got) != 1 || got[0] != want {
			t.Errorf("row = %q\nwant %q", got, want)
		}
	}
}
