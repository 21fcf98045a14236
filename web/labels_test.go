package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// call sends method to the API path with body as JSON (none when nil),
// with the admin token, and returns the status and the body.
func (p *pageTest) call(t testing.TB, method, path string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, p.srv.URL+path, r)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// callInto is call, wanting status want and decoding the answer into v.
func (p *pageTest) callInto(t testing.TB, method, path string, body any, want int, v any) {
	t.Helper()
	code, got := p.call(t, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, got, want)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(got), v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, got)
		}
	}
}

// wantError checks that method on path is refused with status want and a
// JSON error that contains each of words.
func (p *pageTest) wantError(t testing.TB, method, path string, body any, want int, words ...string) {
	t.Helper()
	code, got := p.call(t, method, path, body)
	var e struct{ Error string }
	if code != want || json.Unmarshal([]byte(got), &e) != nil || e.Error == "" {
		t.Errorf("%s %s %v: %d %s, want %d and a JSON error", method, path, body, code, got, want)
		return
	}
	for _, w := range words {
		if !strings.Contains(e.Error, w) {
			t.Errorf("%s %s %v: error %q lacks %q", method, path, body, e.Error, w)
		}
	}
}

// served waits until the hub's copy has n devices and the groups named:
// the API shows devices and groups from it.
func (p *pageTest) served(t testing.TB, n int, groups ...string) {
	t.Helper()
	poll.Eventually(t, 10*time.Second, fmt.Sprintf("%d devices and groups %v served", n, groups), func() error {
		devices, err := p.web.hub.Devices(context.Background())
		if err != nil {
			return err
		}
		gs, err := p.web.hub.Groups(context.Background())
		if err != nil {
			return err
		}
		var names []string
		for _, g := range gs {
			names = append(names, g.Name)
		}
		if len(devices) != n || !slices.Equal(names, groups) {
			return fmt.Errorf("%d devices, groups %v", len(devices), names)
		}
		return nil
	})
}

// audited returns the audit log, newest first.
func (p *pageTest) audited(t testing.TB) []fleet.AuditEntry {
	t.Helper()
	entries, _, err := p.store.AuditPage(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// wantAudit checks that the log has an entry of action on target whose
// detail contains detail and whose author is the admin via via ("api" or
// "dashboard").
func wantAudit(t testing.TB, entries []fleet.AuditEntry, action, target, detail, via string) {
	t.Helper()
	for _, e := range entries {
		if e.Action == action && e.Target == target && strings.Contains(e.Detail, detail) {
			if !strings.Contains(e.Who, "admin ("+via+") from 127.0.0.1") || e.Time.IsZero() {
				t.Errorf("audit %s %s: who %q at %v, want the admin via %s from 127.0.0.1, with a time", action, target, e.Who, e.Time, via)
			}
			return
		}
	}
	var have []string
	for _, e := range entries {
		have = append(have, fmt.Sprintf("%s %s %q", e.Action, e.Target, e.Detail))
	}
	t.Errorf("no audit entry %s %s with detail %q; the log:\n%s", action, target, detail, strings.Join(have, "\n"))
}

func countAudit(entries []fleet.AuditEntry, action string) int {
	n := 0
	for _, e := range entries {
		if e.Action == action {
			n++
		}
	}
	return n
}

// TestTags: an operator sets and removes tags on a device; a tag wins
// over the agent's label of the same key in the device's groups. Bad
// tags, an unknown device and a deleted one are refused, and no record
// is made for them.
func TestTags(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	ctx := context.Background()
	p.device(t, "kiosk-1", func(d *fleet.Device) {
		kiosk("kiosk-1", "1.0", true)(d)
		d.Labels = fleet.Labels{"site": "berlin", "ring": "main"}
	})
	p.callInto(t, "PUT", "/api/v1/groups/canary", map[string]any{"selector": "ring=canary"}, 200, nil)
	p.served(t, 1, "canary")

	var d DeviceView
	p.callInto(t, "POST", "/api/v1/devices/kiosk-1/tags", TagRequest{Set: fleet.Labels{"ring": "canary", "owner": "ops"}}, 200, &d)
	if want := (fleet.Labels{"ring": "canary", "owner": "ops"}); !maps.Equal(d.Tags, want) {
		t.Errorf("tags = %v, want %v", d.Tags, want)
	}
	if !maps.Equal(d.Labels, fleet.Labels{"site": "berlin", "ring": "main"}) {
		t.Errorf("the agent's labels changed: %v", d.Labels)
	}
	if !slices.Equal(d.Groups, []string{"canary"}) || d.Channel != "stable" {
		t.Errorf("groups %v channel %q, want [canary] (the tag ring=canary over the label ring=main) and stable", d.Groups, d.Channel)
	}
	d = DeviceView{}
	p.callInto(t, "POST", "/api/v1/devices/kiosk-1/tags", TagRequest{Remove: []string{"ring", "nothing"}}, 200, &d)
	if want := (fleet.Labels{"owner": "ops"}); !maps.Equal(d.Tags, want) || len(d.Groups) != 0 {
		t.Errorf("after removing ring: tags %v groups %v, want %v and none", d.Tags, d.Groups, want)
	}

	many := fleet.Labels{}
	for i := range fleet.MaxLabels {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for _, c := range []struct {
		id    string
		body  any
		code  int
		words []string
	}{
		{"kiosk-1", TagRequest{Set: fleet.Labels{"site": "ber lin"}}, 400, []string{`label site value "ber lin"`}},
		{"kiosk-1", TagRequest{Set: fleet.Labels{"": "x"}}, 400, []string{"label key"}},
		{"kiosk-1", TagRequest{Set: fleet.Labels{"a": "1"}, Remove: []string{"a"}}, 400, []string{"tag a both set and removed"}},
		{"kiosk-1", TagRequest{}, 400, []string{"nothing to do"}},
		{"kiosk-1", TagRequest{Set: many}, 400, []string{"would have 33 tags, at most 32"}},
		{"kiosk-1", map[string]any{"set": map[string]string{"a": "1"}, "colour": "red"}, 400, []string{`unknown field "colour"`}},
		{"kiosk-1", "set a=1", 400, []string{"want JSON"}},
		{"nobody", TagRequest{Set: fleet.Labels{"a": "1"}}, 404, []string{"no device with that id"}},
		{"bad.id", TagRequest{Set: fleet.Labels{"a": "1"}}, 404, nil},
	} {
		p.wantError(t, "POST", "/api/v1/devices/"+c.id+"/tags", c.body, c.code, c.words...)
	}
	if _, err := p.store.Device(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("tagging an unknown device made a record: %v", err)
	}
	if d, _ := p.store.Device(ctx, "kiosk-1"); !maps.Equal(d.Tags, fleet.Labels{"owner": "ops"}) {
		t.Errorf("refused tags changed the device: %v", d.Tags)
	}

	// A device deleted stays deleted.
	p.device(t, "gone", kiosk("gone", "1.0", true))
	if err := p.store.DeleteDevice(ctx, "gone", "test"); err != nil {
		t.Fatal(err)
	}
	p.wantError(t, "POST", "/api/v1/devices/gone/tags", TagRequest{Set: fleet.Labels{"a": "1"}}, 404)
	if _, err := p.store.Device(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("tagging a deleted device brought its record back: %v", err)
	}

	entries := p.audited(t)
	wantAudit(t, entries, "device.tag", "kiosk-1", "set owner=ops,ring=canary", "api")
	wantAudit(t, entries, "device.untag", "kiosk-1", "removed nothing,ring", "api")
	if n := countAudit(entries, "device.tag") + countAudit(entries, "device.untag"); n != 2 {
		t.Errorf("%d tag actions audited, want the 2 done", n)
	}
}

// TestPins: an operator pins a device to a release in the catalog, and
// unpins it; a version that is not in the catalog is refused with the
// versions that are. Offer again leaves a pinned device alone.
func TestPins(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("2.0", "u-2.0.zip"), release("1.0", "u-1.0.zip")}, Target: "2.0"})
	p.device(t, "kiosk-1", kiosk("kiosk-1", "1.0", true))

	var d DeviceView
	p.callInto(t, "PUT", "/api/v1/devices/kiosk-1/pin", PinRequest{Version: "1.0.0", Reason: "2.0 breaks the printer"}, 200, &d)
	if d.Pin == nil || d.Pin.Version != "1.0" || d.Pin.Reason != "2.0 breaks the printer" || !strings.Contains(d.Pin.By, "admin (api)") || d.Pin.Time.IsZero() {
		t.Errorf("pin = %+v, want 1.0 (as the catalog spells it) with the reason, who and when", d.Pin)
	}
	if stored, _ := p.store.Device(context.Background(), "kiosk-1"); stored.Pin == nil || stored.Pin.Version != "1.0" {
		t.Errorf("stored pin = %+v", stored.Pin)
	}
	// Offer again never offers a pinned device anything but its pin.
	offers := make(chan wire.Offer, 10)
	sub, err := p.nc.Subscribe(wire.OfferSubject("kiosk-1"), func(m *nats.Msg) {
		if o, err := wire.Decode[wire.Offer](m.Data); err == nil {
			offers <- o
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if code, body := p.call(t, "POST", "/api/v1/devices/kiosk-1/offer", nil); code == 200 && !strings.Contains(body, `"offered": "1.0"`) {
		t.Errorf("offer again to a device pinned to 1.0: %d %s", code, body)
	}
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for quiet := time.After(500 * time.Millisecond); ; {
		select {
		case o := <-offers:
			if o.Version != "1.0" {
				t.Errorf("offer again to a device pinned to 1.0 offered %s", o.Version)
			}
			continue
		case <-quiet:
		}
		break
	}

	p.wantError(t, "PUT", "/api/v1/devices/kiosk-1/pin", PinRequest{Version: "9.9"}, 400, `version "9.9" is not in the catalog; it has 2.0, 1.0`)
	p.wantError(t, "PUT", "/api/v1/devices/kiosk-1/pin", PinRequest{}, 400, "give the version")
	p.wantError(t, "PUT", "/api/v1/devices/kiosk-1/pin", PinRequest{Version: "1.0", Reason: strings.Repeat("x", 300)}, 400, "longer than 256")
	p.wantError(t, "PUT", "/api/v1/devices/nobody/pin", PinRequest{Version: "1.0"}, 404, "no device")
	p.wantError(t, "DELETE", "/api/v1/devices/nobody/pin", nil, 404, "no device")
	if _, err := p.store.Device(context.Background(), "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pinning an unknown device made a record: %v", err)
	}

	d = DeviceView{}
	p.callInto(t, "DELETE", "/api/v1/devices/kiosk-1/pin", nil, 200, &d)
	if d.Pin != nil {
		t.Errorf("pin after DELETE: %+v", d.Pin)
	}
	p.callInto(t, "POST", "/api/v1/devices/kiosk-1/offer", nil, 200, nil)
	for done := false; !done; {
		select {
		case o := <-offers:
			done = o.Version == "2.0"
		case <-time.After(10 * time.Second):
			t.Fatal("no offer of 2.0 after the unpin")
		}
	}

	// Nor a device whose group is pinned.
	p.device(t, "kiosk-2", func(d *fleet.Device) {
		kiosk("kiosk-2", "1.0", true)(d)
		d.Labels = fleet.Labels{"site": "paris"}
	})
	p.callInto(t, "PUT", "/api/v1/groups/paris", map[string]any{"selector": "site=paris", "pin": PinRequest{Version: "1.0"}}, 200, nil)
	p.served(t, 2, "paris")
	if code, body := p.call(t, "POST", "/api/v1/devices/kiosk-2/offer", nil); code == 200 && !strings.Contains(body, `"offered": "1.0"`) {
		t.Errorf("offer again to a device of a group pinned to 1.0: %d %s", code, body)
	}

	entries := p.audited(t)
	wantAudit(t, entries, "device.pin", "kiosk-1", "1.0: 2.0 breaks the printer", "api")
	wantAudit(t, entries, "device.unpin", "kiosk-1", "was pinned to 1.0", "api")
	wantAudit(t, entries, "device.offer-again", "kiosk-1", "2.0", "api")
	if n := countAudit(entries, "device.pin"); n != 1 {
		t.Errorf("%d pins audited, want the one done", n)
	}
}

// TestGroups: groups are created, listed, shown with their device count,
// changed and deleted; a device shows the groups it is in and the channel
// they give it. Bad groups are refused, as is deleting one that a running
// rollout rolls out to.
func TestGroups(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("2.0", "u-2.0.zip"), release("1.0", "u-1.0.zip")}, Target: "2.0"})
	for i, site := range []string{"berlin", "berlin", "paris"} {
		id := fmt.Sprintf("kiosk-%d", i)
		p.device(t, id, func(d *fleet.Device) {
			kiosk(id, "1.0", true)(d)
			d.Labels = fleet.Labels{"site": site}
		})
	}
	p.served(t, 3)

	var g GroupView
	p.callInto(t, "PUT", "/api/v1/groups/berlin", map[string]any{
		"selector": "site=berlin", "channel": "Beta",
		"window": map[string]any{"days": []string{"Mon", "tue"}, "start": "02:00", "end": "04:00", "zone": "Europe/Berlin"},
	}, 200, &g)
	if g.Name != "berlin" || g.Selector.String() != "site=berlin" || g.Channel != "beta" || g.Devices != 2 ||
		g.Window == nil || g.Window.String() != "mon,tue 02:00-04:00 Europe/Berlin" || g.Created.IsZero() {
		t.Errorf("PUT berlin answered %+v", g)
	}
	p.callInto(t, "PUT", "/api/v1/groups/frozen", map[string]any{
		"selector": map[string]any{"match": map[string]string{"site": "paris"}},
		"pin":      map[string]string{"version": "1.0", "reason": "audit season"},
	}, 200, &g)
	if g.Pin == nil || g.Pin.Version != "1.0" || g.Pin.Reason != "audit season" || g.Devices != 1 {
		t.Errorf("PUT frozen answered %+v", g)
	}

	p.served(t, 3, "berlin", "frozen")
	var list struct{ Groups []GroupView }
	p.callInto(t, "GET", "/api/v1/groups", nil, 200, &list)
	if len(list.Groups) != 2 || list.Groups[0].Name != "berlin" || list.Groups[1].Name != "frozen" {
		t.Fatalf("groups %+v", list.Groups)
	}
	if list.Groups[0].Devices != 2 || list.Groups[1].Devices != 1 {
		t.Errorf("device counts %d, %d; want 2, 1", list.Groups[0].Devices, list.Groups[1].Devices)
	}
	p.callInto(t, "GET", "/api/v1/groups/frozen", nil, 200, &g)
	if g.Pin == nil || g.Devices != 1 {
		t.Errorf("GET frozen: %+v", g)
	}

	var d DeviceView
	p.callInto(t, "GET", "/api/v1/devices/kiosk-0", nil, 200, &d)
	if !slices.Equal(d.Groups, []string{"berlin"}) || d.Channel != "beta" {
		t.Errorf("kiosk-0: groups %v channel %q, want [berlin] beta", d.Groups, d.Channel)
	}
	var page DevicePage
	p.callInto(t, "GET", "/api/v1/devices?limit=10", nil, 200, &page)
	if len(page.Devices) != 3 || !slices.Equal(page.Devices[2].Groups, []string{"frozen"}) || page.Devices[2].Channel != "stable" {
		t.Errorf("device page: %+v", page.Devices)
	}
	code, body := p.call(t, "GET", "/api/v1/devices", nil)
	if code != 200 || !strings.Contains(body, `"groups": [
      "berlin"
    ],
    "channel": "beta"`) {
		t.Errorf("GET /api/v1/devices lacks kiosk-0's groups and channel: %d %.2000s", code, body)
	}

	for _, c := range []struct {
		name  string
		body  any
		code  int
		words []string
	}{
		{"Bad_Name", map[string]any{"selector": "site=x"}, 400, []string{`name "Bad_Name"`}},
		{"x", map[string]any{}, 400, []string{"selector: required"}},
		{"x", map[string]any{"selector": ""}, 400, []string{"selector: required"}},
		{"x", map[string]any{"selector": "site"}, 200, nil}, // a key alone: an empty value
		{"x", map[string]any{"selector": "si te=x"}, 400, []string{"label key"}},
		{"x", map[string]any{"selector": map[string]any{"match": map[string]string{"a": "b c"}}}, 400, []string{`value "b c"`}},
		{"x", map[string]any{"selector": map[string]any{"labels": map[string]string{"a": "b"}}}, 400, []string{"unknown field"}},
		{"x", map[string]any{"selector": map[string]any{"ids": []string{"a.b"}}}, 400, []string{"invalid device id"}},
		{"x", map[string]any{"selector": "a=b", "channel": "be ta"}, 400, []string{`channel "be ta"`}},
		{"x", map[string]any{"selector": "a=b", "pin": map[string]string{"version": "3.0"}}, 400, []string{`version "3.0" is not in the catalog; it has 2.0, 1.0`}},
		{"x", map[string]any{"selector": "a=b", "window": map[string]any{"days": []string{"someday"}, "start": "02:00", "end": "03:00"}}, 400, []string{`window day "someday"`}},
		{"x", map[string]any{"selector": "a=b", "window": map[string]any{"start": "2am", "end": "03:00"}}, 400, []string{`window time "2am"`}},
		{"x", map[string]any{"selector": "a=b", "window": map[string]any{"start": "02:00", "end": "03:00", "zone": "Mars/Olympus"}}, 400, []string{`window zone "Mars/Olympus"`}},
		{"x", map[string]any{"selector": "a=b", "colour": "red"}, 400, []string{`unknown field "colour"`}},
	} {
		if c.code == 200 {
			p.callInto(t, "PUT", "/api/v1/groups/"+c.name, c.body, 200, nil)
			continue
		}
		p.wantError(t, "PUT", "/api/v1/groups/"+c.name, c.body, c.code, c.words...)
	}
	p.wantError(t, "GET", "/api/v1/groups/nothing", nil, 404, `no group called "nothing"`)

	// A group a running rollout rolls out to stays.
	if err := p.store.CreateRollout(context.Background(), fleet.Rollout{
		ID: "r1", Version: "2.0", Group: "berlin", Waves: fleet.DefaultWaves(), State: fleet.RolloutRunning,
	}); err != nil {
		t.Fatal(err)
	}
	p.wantError(t, "DELETE", "/api/v1/groups/berlin", nil, 409, "rollout r1 (running) rolls out to group berlin")
	p.callInto(t, "DELETE", "/api/v1/groups/frozen", nil, 200, nil)
	p.wantError(t, "DELETE", "/api/v1/groups/frozen", nil, 404, `no group called "frozen"`)
	if _, err := p.store.Group(context.Background(), "frozen"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("frozen after DELETE: %v", err)
	}
	poll.Eventually(t, 10*time.Second, "kiosk-2 out of the deleted group", func() error {
		d = DeviceView{}
		p.callInto(t, "GET", "/api/v1/devices/kiosk-2", nil, 200, &d)
		if len(d.Groups) != 0 {
			return fmt.Errorf("groups %v", d.Groups)
		}
		return nil
	})

	entries := p.audited(t)
	wantAudit(t, entries, "group.set", "berlin", "selector site=berlin, channel beta, window mon,tue 02:00-04:00 Europe/Berlin", "api")
	wantAudit(t, entries, "group.set", "frozen", "selector site=paris, pinned to 1.0", "api")
	wantAudit(t, entries, "group.delete", "frozen", "", "api")
	if n, want := countAudit(entries, "group.set"), 3; n != want {
		t.Errorf("%d group.set entries, want %d (refused ones are not recorded)", n, want)
	}
	if n := countAudit(entries, "group.delete"); n != 1 {
		t.Errorf("%d group.delete entries, want 1", n)
	}
}

// TestBulk: one action on many devices, chosen by id or by selector,
// with a result for each; a request wrong as a whole changes nothing.
func TestBulk(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	ctx := context.Background()
	target := release("2.0", "u-2.0.zip")
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{target, release("1.0", "u-1.0.zip")}, Target: "2.0"})
	for i := range 6 {
		id := fmt.Sprintf("kiosk-%d", i)
		p.device(t, id, func(d *fleet.Device) {
			kiosk(id, "1.0", true)(d)
			d.Labels = fleet.Labels{"site": []string{"berlin", "paris"}[i%2]}
			if i < 2 {
				d.Install = &fleet.Install{Version: "2.0", State: wire.StateFailed, Detail: "exit status 1", Started: time.Now()}
			}
		})
	}
	p.served(t, 6) // a selector matches the hub's copy
	offers := make(chan string, 100)
	sub, err := p.nc.Subscribe(wire.AllOffers, func(m *nats.Msg) {
		_, id, _ := wire.ParseSubject(m.Subject)
		offers <- id
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	bulk := func(req BulkRequest) BulkResponse {
		t.Helper()
		var res BulkResponse
		p.callInto(t, "POST", "/api/v1/devices/bulk", req, 200, &res)
		return res
	}
	summary := func(res BulkResponse) string {
		var parts []string
		for _, r := range res.Results {
			switch {
			case r.OK:
				parts = append(parts, r.ID+":ok")
			case r.Skipped:
				parts = append(parts, r.ID+":skipped")
			default:
				parts = append(parts, r.ID+":"+r.Error)
			}
		}
		return strings.Join(parts, " ")
	}

	res := bulk(BulkRequest{IDs: []string{"kiosk-1", "kiosk-0", "nobody", "kiosk-1"}, Action: "tag", Tags: fleet.Labels{"ring": "canary"}})
	if got, want := summary(res), "kiosk-1:ok kiosk-0:ok nobody:no device with that id"; got != want || res.Action != "tag" {
		t.Errorf("bulk tag: %s %s, want %s", res.Action, got, want)
	}
	if _, err := p.store.Device(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bulk tag made a record of an unknown device: %v", err)
	}

	res = bulk(BulkRequest{Selector: "site=berlin", Action: "pin", Version: "1.0", Reason: "freeze"})
	if got, want := summary(res), "kiosk-0:ok kiosk-2:ok kiosk-4:ok"; got != want {
		t.Errorf("bulk pin by selector: %s, want %s", got, want)
	}
	for _, id := range []string{"kiosk-0", "kiosk-2", "kiosk-4"} {
		if d, _ := p.store.Device(ctx, id); d.Pin == nil || d.Pin.Version != "1.0" || d.Pin.Reason != "freeze" {
			t.Errorf("%s pin %+v", id, d.Pin)
		}
	}
	if d, _ := p.store.Device(ctx, "kiosk-1"); d.Pin != nil {
		t.Errorf("kiosk-1 (paris) pinned: %+v", d.Pin)
	}

	// Retry failed: only the failed installs, and not the pinned device.
	res = bulk(BulkRequest{IDs: []string{"kiosk-0", "kiosk-1", "kiosk-3"}, Action: "retry-failed"})
	if got, want := summary(res), "kiosk-0:skipped kiosk-1:ok kiosk-3:skipped"; got != want {
		t.Errorf("bulk retry-failed: %s, want %s", got, want)
	}
	if res.Results[2].Error != "its latest install did not fail" || res.Results[0].Error == "" {
		t.Errorf("the skipped say %q and %q", res.Results[0].Error, res.Results[2].Error)
	}
	select {
	case id := <-offers:
		if id != "kiosk-1" {
			t.Errorf("offer to %s, want kiosk-1", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no offer published to kiosk-1")
	}
	res = bulk(BulkRequest{Selector: "site=paris", Action: "offer-again"})
	if got, want := summary(res), "kiosk-1:ok kiosk-3:ok kiosk-5:ok"; got != want {
		t.Errorf("bulk offer-again: %s, want %s", got, want)
	}
	var got []string
	for range 3 {
		select {
		case id := <-offers:
			got = append(got, id)
		case <-time.After(10 * time.Second):
			t.Fatalf("offers: %v, want 3", got)
		}
	}
	if slices.Sort(got); !slices.Equal(got, []string{"kiosk-1", "kiosk-3", "kiosk-5"}) {
		t.Errorf("offers to %v", got)
	}

	poll.Eventually(t, 10*time.Second, "the tags served", func() error {
		for _, id := range []string{"kiosk-0", "kiosk-1"} {
			if d, err := p.web.hub.Device(ctx, id); err != nil || d.Tags["ring"] != "canary" {
				return fmt.Errorf("%s: tags %v, %v", id, d.Tags, err)
			}
		}
		return nil
	})
	res = bulk(BulkRequest{Selector: "ring=canary", Action: "untag", Keys: []string{"ring"}})
	if got, want := summary(res), "kiosk-0:ok kiosk-1:ok"; got != want {
		t.Errorf("bulk untag: %s, want %s", got, want)
	}
	res = bulk(BulkRequest{Selector: "site=berlin", Action: "unpin"})
	if got, want := summary(res), "kiosk-0:ok kiosk-2:ok kiosk-4:ok"; got != want {
		t.Errorf("bulk unpin: %s, want %s", got, want)
	}

	// Approve and revoke work on enrollments, reported or not.
	p.enroll(t, "new-1", "n1", fleet.EnrollPending, time.Now())
	p.enroll(t, "new-2", "n2", fleet.EnrollPending, time.Now())
	res = bulk(BulkRequest{IDs: []string{"new-1", "new-2", "kiosk-5"}, Action: "approve"})
	if got, want := summary(res), "new-1:ok new-2:ok kiosk-5:no device with that id has asked to enroll"; got != want {
		t.Errorf("bulk approve: %s, want %s", got, want)
	}
	if p.enrollState(t, "new-1") != fleet.EnrollApproved || p.enrollState(t, "new-2") != fleet.EnrollApproved {
		t.Error("bulk approve left an enrollment pending")
	}
	res = bulk(BulkRequest{IDs: []string{"new-2"}, Action: "revoke"})
	if got, want := summary(res), "new-2:ok"; got != want || p.enrollState(t, "new-2") != fleet.EnrollRevoked {
		t.Errorf("bulk revoke: %s, want %s", got, want)
	}

	res = bulk(BulkRequest{IDs: []string{"kiosk-4", "kiosk-5"}, Action: "delete"})
	if got, want := summary(res), "kiosk-4:ok kiosk-5:ok"; got != want {
		t.Errorf("bulk delete: %s, want %s", got, want)
	}
	for _, id := range []string{"kiosk-4", "kiosk-5"} {
		if _, err := p.store.Device(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after bulk delete: %v", id, err)
		}
	}

	// Wrong as a whole: refused, nothing done.
	before := len(p.audited(t))
	for _, c := range []struct {
		req   any
		words []string
	}{
		{BulkRequest{IDs: []string{"kiosk-0"}, Action: "reboot"}, []string{`action "reboot": want one of offer-again, retry-failed, approve`}},
		{BulkRequest{Action: "tag", Tags: fleet.Labels{"a": "b"}}, []string{"no devices"}},
		{BulkRequest{IDs: []string{"kiosk-0"}, Selector: "site=berlin", Action: "unpin"}, []string{"not both"}},
		{BulkRequest{IDs: []string{"kiosk-0", "a b"}, Action: "unpin"}, []string{`ids: "a b"`}},
		{BulkRequest{Selector: "site=ber lin", Action: "unpin"}, []string{"selector"}},
		{BulkRequest{IDs: []string{"kiosk-0"}, Action: "pin", Version: "7.0"}, []string{`version "7.0" is not in the catalog`}},
		{BulkRequest{IDs: []string{"kiosk-0"}, Action: "tag"}, []string{"nothing to do"}},
		{BulkRequest{IDs: []string{"kiosk-0"}, Action: "tag", Tags: fleet.Labels{"a": "b c"}}, []string{`value "b c"`}},
		{BulkRequest{IDs: []string{"kiosk-0"}, Action: "untag", Tags: fleet.Labels{"a": "b"}}, []string{`untag takes "keys"`}},
		{map[string]any{"ids": []string{"kiosk-0"}, "action": "delete", "force": true}, []string{`unknown field "force"`}},
	} {
		p.wantError(t, "POST", "/api/v1/devices/bulk", c.req, 400, c.words...)
	}
	if d, _ := p.store.Device(ctx, "kiosk-0"); d.Pin != nil || len(d.Tags) != 0 {
		t.Errorf("a refused bulk request changed kiosk-0: pin %+v tags %v", d.Pin, d.Tags)
	}

	entries := p.audited(t)
	if len(entries) != before {
		t.Errorf("refused bulk requests were audited: %d entries, then %d", before, len(entries))
	}
	for _, c := range []struct {
		action string
		n      int
	}{
		{"device.tag", 2}, {"device.pin", 3}, {"device.offer-again", 4}, {"device.untag", 2},
		{"device.unpin", 3}, {"device.approve", 2}, {"device.revoke", 1}, {"device.delete", 2},
	} {
		if got := countAudit(entries, c.action); got != c.n {
			t.Errorf("%d %s entries, want %d, one per device done", got, c.action, c.n)
		}
	}
	wantAudit(t, entries, "device.tag", "kiosk-1", "bulk: set ring=canary", "api")
	wantAudit(t, entries, "device.pin", "kiosk-2", "bulk: 1.0: freeze", "api")
	wantAudit(t, entries, "device.offer-again", "kiosk-5", "bulk: 2.0", "api")
	wantAudit(t, entries, "device.approve", "new-1", "bulk", "api")
	wantAudit(t, entries, "device.delete", "kiosk-4", "bulk", "api")
}

// TestAuditExistingActions: the actions that were there before the audit
// log, on the dashboard and at the API, and signing in and out, are all
// recorded with who did them and how.
func TestAuditExistingActions(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.catalog(t, fleet.Catalog{Releases: []fleet.Release{release("2.0", "u-2.0.zip")}, Target: "2.0"})
	for _, id := range []string{"page-1", "page-2", "api-1", "api-2"} {
		p.device(t, id, kiosk(id, "1.0", true))
		p.enroll(t, id, id, fleet.EnrollPending, time.Now())
	}

	postOffer(t, p, "page-1")
	for _, path := range []string{"/clients/page-1/approve", "/clients/page-2/revoke", "/clients/page-2/delete"} {
		if resp, body := p.post(t, p.client, path, url.Values{"confirm": {"yes"}}, nil); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %s %s", path, resp.Status, body)
		}
	}
	p.callInto(t, "POST", "/api/v1/devices/api-1/offer", nil, 200, nil)
	p.callInto(t, "POST", "/api/v1/devices/api-1/approve", nil, 200, nil)
	p.callInto(t, "POST", "/api/v1/devices/api-2/revoke", nil, 200, nil)
	p.callInto(t, "DELETE", "/api/v1/devices/api-2", nil, 200, nil)
	p.wantError(t, "POST", "/api/v1/devices/api-2/approve", nil, 409, "revoked")
	if resp, _ := p.post(t, p.client, "/logout", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %s", resp.Status)
	}

	entries := p.audited(t)
	for _, c := range []struct{ action, target, detail, via string }{
		{"session.sign-in", "", "", "dashboard"},
		{"device.offer-again", "page-1", "2.0", "dashboard"},
		{"device.approve", "page-1", "", "dashboard"},
		{"device.revoke", "page-2", "", "dashboard"},
		{"device.delete", "page-2", "", "dashboard"},
		{"device.offer-again", "api-1", "2.0", "api"},
		{"device.approve", "api-1", "", "api"},
		{"device.revoke", "api-2", "", "api"},
		{"device.delete", "api-2", "", "api"},
		{"session.sign-out", "", "", "dashboard"},
	} {
		wantAudit(t, entries, c.action, c.target, c.detail, c.via)
	}
	if n := countAudit(entries, "device.approve"); n != 2 {
		t.Errorf("%d approvals audited, want 2: a refused one is not", n)
	}
	if entries[0].Action != "session.sign-out" || entries[len(entries)-1].Action != "session.sign-in" {
		t.Errorf("the log, newest first, runs from %s to %s; want from the sign-out to the sign-in", entries[0].Action, entries[len(entries)-1].Action)
	}
}

// TestLiveGroups: a page showing groups (topics=groups), or devices and
// so their groups and channel (topics=devices), hears of a group set or
// deleted.
func TestLiveGroups(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	for _, topics := range []string{"groups", "devices"} {
		since := p.web.hub.Begin(context.Background())
		s := openStream(t, p, fmt.Sprintf("topics=%s&since=%d", topics, since))
		s.quiet(t, 500*time.Millisecond, "nothing changed yet")
		p.callInto(t, "PUT", "/api/v1/groups/g-"+topics, map[string]any{"selector": "site=berlin"}, 200, nil)
		s.expect(t, "event: change", 10*time.Second)
		p.callInto(t, "DELETE", "/api/v1/groups/g-"+topics, nil, 200, nil)
		s.expect(t, "event: change", 10*time.Second)
		s.close()
	}
}
