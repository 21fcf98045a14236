package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
)

// page GETs one page of devices; it fails the test unless the answer is
// 200 with a page.
func (a *apiTest) devicePage(t *testing.T, query url.Values) DevicePage {
	t.Helper()
	resp, body := a.do(t, "/api/v1/devices?"+query.Encode(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/devices?%s: %s %s", query.Encode(), resp.Status, body)
	}
	var p DevicePage
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("GET /api/v1/devices?%s: %v in %s", query.Encode(), err, body)
	}
	return p
}

func (a *apiTest) put(t *testing.T, id string) {
	t.Helper()
	if _, err := a.store.UpdateDevice(context.Background(), id, func(d *fleet.Device) error {
		kiosk(id, "1.0", true)(d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// served waits until GET /api/v1/devices/{id} answers want (200 or 404):
// the API serves the web server's copy, which follows the store.
func (a *apiTest) served(t *testing.T, id string, want int) {
	t.Helper()
	poll.Eventually(t, 10*time.Second, "device "+id+" served as "+fmt.Sprint(want), func() error {
		if resp, body := a.do(t, "/api/v1/devices/"+id, nil); resp.StatusCode != want {
			return fmt.Errorf("%s %s", resp.Status, body)
		}
		return nil
	})
}

// TestDevicePagesWalk walks every page of devices, three at a time, while
// devices are added and removed before and after the cursor between
// pages: each device that exists throughout the walk is listed exactly
// once, and the pages come in id order.
func TestDevicePagesWalk(t *testing.T) {
	a := newAPITest(t)
	ctx := context.Background()
	var stable []string
	for i := range 20 {
		id := fmt.Sprintf("k%02d-s", i)
		stable = append(stable, id)
		a.put(t, id)
		if i%2 == 0 {
			a.put(t, fmt.Sprintf("k%02d-v", i)) // volatile: removed during the walk
		}
	}
	a.served(t, "k19-s", 200)

	seen := map[string]int{}
	var order []string
	q := url.Values{"limit": {"3"}}
	for pages := 0; ; pages++ {
		if pages > 40 {
			t.Fatal("the walk does not end")
		}
		p := a.devicePage(t, q)
		if len(p.Devices) > 3 {
			t.Fatalf("page of %d devices, want at most the limit 3", len(p.Devices))
		}
		for _, d := range p.Devices {
			seen[d.ID]++
			order = append(order, d.ID)
		}
		if p.NextCursor == "" {
			break
		}
		q.Set("cursor", p.NextCursor)
		// Behind the cursor, a device goes and another comes; ahead of
		// it, the same. An offset would now skip or repeat devices.
		last := p.Devices[len(p.Devices)-1].ID
		n := 0
		fmt.Sscanf(last, "k%02d", &n)
		behind, ahead := fmt.Sprintf("k%02d-v", n-1), fmt.Sprintf("k%02d-v", n+4)
		for _, id := range []string{behind, ahead} {
			if _, err := a.store.Device(ctx, id); err == nil {
				if err := a.store.DeleteDevice(ctx, id, "test"); err != nil {
					t.Fatal(err)
				}
				a.served(t, id, 404)
			} else {
				a.put(t, id)
				a.served(t, id, 200)
			}
		}
		a.put(t, fmt.Sprintf("k%02d-a", n)) // a newcomer just behind the cursor
		a.served(t, fmt.Sprintf("k%02d-a", n), 200)
	}
	for _, id := range stable {
		if seen[id] != 1 {
			t.Errorf("%s listed %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s listed %d times", id, n)
		}
	}
	if !slices.IsSorted(order) {
		t.Errorf("pages not in id order: %v", order)
	}
}

// TestDevicePagesFilter pages through a filtered selection: the total is
// the selection's, and each page holds only devices it selects.
func TestDevicePagesFilter(t *testing.T) {
	a := newAPITest(t)
	ctx := context.Background()
	if err := a.store.PutCatalog(ctx, fleet.Catalog{Releases: []fleet.Release{release("1.10", "u.zip")}, Target: "1.10"}); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		id := fmt.Sprintf("kiosk-%02d", i)
		if _, err := a.store.UpdateDevice(ctx, id, func(d *fleet.Device) error {
			kiosk(id, []string{"1.9", "1.10", ""}[i%3], i%2 == 0)(d)
			if i == 5 {
				d.Hostname = "Lobby-Screen"
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	a.served(t, "kiosk-11", 200)
	tests := []struct {
		query string
		want  []string // every id, over all pages
	}{
		{"alive=true", []string{"kiosk-00", "kiosk-02", "kiosk-04", "kiosk-06", "kiosk-08", "kiosk-10"}},
		{"alive=false&version=1.10", []string{"kiosk-01", "kiosk-07"}},
		{"version=none", []string{"kiosk-02", "kiosk-05", "kiosk-08", "kiosk-11"}},
		{"outdated=true&alive=true", []string{"kiosk-00", "kiosk-02", "kiosk-06", "kiosk-08"}},
		{"outdated=false", []string{"kiosk-01", "kiosk-04", "kiosk-07", "kiosk-10"}},
		{"q=lobby", []string{"kiosk-05"}},
		{"q=KIOSK-1", []string{"kiosk-10", "kiosk-11"}},
		{"q=nothing", nil},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		q.Set("limit", "2")
		var got []string
		for range 10 {
			p := a.devicePage(t, q)
			if p.Total != len(tt.want) {
				t.Errorf("%s: total %d, want %d", tt.query, p.Total, len(tt.want))
			}
			for _, d := range p.Devices {
				got = append(got, d.ID)
			}
			if p.NextCursor == "" {
				break
			}
			q.Set("cursor", p.NextCursor)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.query, got, tt.want)
		}
		// The same filter without a limit: one array of the same devices.
		_, body := a.do(t, "/api/v1/devices?"+tt.query, nil)
		var all []fleet.Device
		if err := json.Unmarshal([]byte(body), &all); err != nil {
			t.Fatalf("%s unpaged: %v in %s", tt.query, err, body)
		}
		var ids []string
		for _, d := range all {
			ids = append(ids, d.ID)
		}
		if !slices.Equal(ids, tt.want) {
			t.Errorf("%s unpaged: %v, want %v", tt.query, ids, tt.want)
		}
	}
}

// TestDevicesStreamedAsBefore: the unpaginated answer, now written device
// by device, has the bytes writeJSON gave the whole slice, for an empty
// fleet and a full one (with characters that JSON escapes).
func TestDevicesStreamedAsBefore(t *testing.T) {
	a := newAPITest(t)
	ctx := context.Background()
	_, body := a.do(t, "/api/v1/devices", nil)
	if body != "[]\n" {
		t.Errorf("empty fleet: %q, want %q", body, "[]\n")
	}
	for i := range 5 {
		id := fmt.Sprintf("kiosk-%d", i)
		if _, err := a.store.UpdateDevice(ctx, id, func(d *fleet.Device) error {
			kiosk(id, "1.0", i%2 == 0)(d)
			d.Hostname = `<script>"&` + id
			if i == 3 {
				d.Install = &fleet.Install{Version: "1.1", State: "downloading", Detail: "50%"}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	a.served(t, "kiosk-4", 200)
	resp, body := a.do(t, "/api/v1/devices", nil)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	stored, err := a.store.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(stored, func(a, b fleet.Device) int { return strings.Compare(a.ID, b.ID) })
	views := make([]DeviceView, len(stored))
	for i, d := range stored {
		views[i] = deviceView(d, nil)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want) // what writeJSON writes
	enc.SetIndent("", "  ")
	if err := enc.Encode(views); err != nil {
		t.Fatal(err)
	}
	if body != want.String() {
		t.Errorf("streamed devices differ from the slice encoded whole:\n got: %.600s\nwant: %.600s", body, want.String())
	}
}

// TestAPIErrorsAreJSON: every refusal of the API is JSON with an error,
// naming the parameter when a query value is refused; pages keep the
// plain answers of the web.
func TestAPIErrorsAreJSON(t *testing.T) {
	a := newAPITest(t)
	tests := []struct {
		method, path string
		status       int
		param        string // the parameter named, for 400
		allow        string // the Allow header, for 405
	}{
		{"GET", "/api/v1/nothing", 404, "", ""},
		{"GET", "/api/v2/devices", 404, "", ""},
		{"POST", "/api/v1/devices", 405, "", "GET, HEAD"},
		{"PUT", "/api/v1/devices/kiosk-1", 405, "", "DELETE, GET, HEAD"},
		{"GET", "/api/v1/devices/nobody", 404, "", ""},
		{"GET", "/api/v1/devices?limit=abc", 400, "limit", ""},
		{"GET", "/api/v1/devices?limit=-1", 400, "limit", ""},
		{"GET", "/api/v1/devices?limit=0", 400, "limit", ""},
		{"GET", "/api/v1/devices?limit=1001", 400, "limit", ""},
		{"GET", "/api/v1/devices?limit=", 400, "limit", ""},
		{"GET", "/api/v1/devices?cursor=%21%21", 400, "cursor", ""},
		{"GET", "/api/v1/devices?cursor=Li4vZXRj", 400, "cursor", ""}, // "../etc"
		{"GET", "/api/v1/devices?alive=maybe", 400, "alive", ""},
		{"GET", "/api/v1/devices?outdated=1", 400, "outdated", ""},
		{"GET", "/api/v1/history?limit=abc", 400, "limit", ""},
		{"GET", "/api/v1/history?device=..%2Fx", 400, "device", ""},
		{"GET", "/downloads/nothing.zip", 404, "", ""},
		{"GET", "/downloads/nothing.zip?exp=1&sig=00", 403, "", ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, a.srv.URL+tt.path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if strings.HasPrefix(tt.path, "/downloads/") && tt.status == 403 {
			req.Header.Del("Authorization")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error, Param string }
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		switch {
		case resp.StatusCode != tt.status:
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		case resp.Header.Get("Content-Type") != "application/json" || err != nil || e.Error == "":
			t.Errorf("%s %s: %s %q, %v: want a JSON error", tt.method, tt.path, resp.Status, resp.Header.Get("Content-Type"), err)
		case e.Param != tt.param || tt.param != "" && !strings.HasPrefix(e.Error, tt.param+": "):
			t.Errorf("%s %s: %+v, want it to name %q", tt.method, tt.path, e, tt.param)
		case resp.Header.Get("Allow") != tt.allow:
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, resp.Header.Get("Allow"), tt.allow)
		}
	}
	// A page's path is no API: the web's own 404.
	resp, _ := a.do(t, "/no-such-page", nil)
	if resp.StatusCode != 404 || strings.Contains(resp.Header.Get("Content-Type"), "json") {
		t.Errorf("unknown page: %s %q, want a plain 404", resp.Status, resp.Header.Get("Content-Type"))
	}
}
