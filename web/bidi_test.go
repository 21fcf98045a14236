package web

import (
	"io"
	"strings"
	"testing"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
	"github.com/thinfleet/thinfleet/wire"
)

// hiddenRunes are the code points a device must not get onto a page:
// bidirectional controls, which reorder what the operator reads, and C0
// and C1 controls, terminal escapes among them.
var hiddenRunes = []rune{
	0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x200e, 0x200f, 0x061c,
	0x00, 0x07, 0x1b, 0x7f, 0x85, 0x9b,
}

// TestDeviceStringsLoseControls reports a device whose every string
// carries bidirectional and control characters, as a hostile agent can,
// and reads the raw HTML of the clients page, the client page and the
// overview: none of those code points is in it, and on the two device
// pages the text around them still is.
func TestDeviceStringsLoseControls(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	const evil = "shop\u202etxt.exe\x1b[31m\u2066x\u2069\u200f\x00\x9b"
	p.device(t, "kiosk-evil", func(d *fleet.Device) {
		kiosk("kiosk-evil", "1.0", true)(d)
		d.Hostname = evil
		d.Hardware.Hostname = evil
		d.Hardware.OS, d.Hardware.Platform, d.Hardware.PlatformVersion = evil, evil, evil
		d.Hardware.CPUModel = evil
		d.Hardware.Disks = []wire.Disk{{Mount: evil, FSType: evil, Total: 1 << 30}}
		d.Hardware.Interfaces = []wire.Interface{{Name: evil, MAC: evil, Addresses: []string{evil}}}
		d.Install = &fleet.Install{Version: evil, State: wire.StateFailed, Detail: evil, Output: evil}
	})
	for _, path := range []string{"/clients", "/clients/kiosk-evil", "/"} {
		resp, err := p.client.Get(p.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		html := string(body)
		for _, r := range hiddenRunes {
			if strings.ContainsRune(html, r) {
				i := strings.IndexRune(html, r)
				t.Errorf("GET %s: the HTML holds U+%04X: %q", path, r, html[max(0, i-150):i+10])
			}
		}
		if path != "/" && !strings.Contains(html, "shop\uFFFDtxt.exe\uFFFD[31m") {
			t.Errorf("GET %s: the hostname is not shown with its controls replaced", path)
		}
	}
}

func TestShown(t *testing.T) {
	tests := []struct{ in, want string }{
		{"kiosk-01.local", "kiosk-01.local"},
		{"a\u202eb", "a\uFFFDb"},
		{"\x1b[31mred", "\uFFFD[31mred"},
		{"line\nnext\ttab", "line\nnext\ttab"},
		{"Intel(R) Celeron(R) — ünïcode", "Intel(R) Celeron(R) — ünïcode"},
	}
	for _, tt := range tests {
		if got := pages.Shown(tt.in); got != tt.want {
			t.Errorf("Shown(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
