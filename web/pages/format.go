package pages

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// Bytes formats a size in IEC units: "512 B", "7.6 GiB", "931 GiB".
func Bytes[T int64 | uint64](n T) string {
	if n < 1024 {
		return strconv.FormatInt(int64(n), 10) + " B"
	}
	v := float64(n)
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := -1
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 100 {
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " " + units[i]
}

// Ago says how long before now t was: "just now", "12 s ago",
// "3 min ago", "5 h ago", "2 d ago"; "never" for the zero time. live.js
// keeps the same words up to date in the browser.
func Ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%d s ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d d ago", int(d/(24*time.Hour)))
}

// Stamp is t as the machine-readable value of a <time> element.
func Stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// Clock is t for people: "2026-11-25 20:12:34 UTC".
func Clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// Percent is done of total as a whole percentage, 0 when total is unknown.
func Percent(done, total int64) int {
	if total <= 0 || done <= 0 {
		return 0
	}
	return int(min(100, done*100/total))
}

// Addresses lists a device's addresses without their prefix length,
// leaving out loopback and link-local ones, which say nothing about where
// the device is.
func Addresses(h wire.Hardware) []string {
	var out []string
	for _, n := range h.Interfaces {
		for _, a := range n.Addresses {
			s, _, _ := strings.Cut(a, "/")
			if ip, err := netip.ParseAddr(s); err == nil && (ip.IsLoopback() || ip.IsLinkLocalUnicast()) {
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// MainDisk is the disk a row shows: the one mounted at /, or else the
// largest.
func MainDisk(h wire.Hardware) (wire.Disk, bool) {
	var best wire.Disk
	found := false
	for _, d := range h.Disks {
		if d.Mount == "/" {
			return d, true
		}
		if !found || d.Total > best.Total {
			best, found = d, true
		}
	}
	return best, found
}

// OrDash is s, or a dash when it is empty.
func OrDash(s string) string {
	if s == "" {
		return "—"
	}
	return Shown(s)
}

func cores(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return "1 core"
	}
	return itoa(n) + " cores"
}

func memory(n uint64) string {
	if n == 0 {
		return "—"
	}
	return Bytes(n)
}

func sortValue(q ClientsQuery) string {
	if q.Desc {
		return "-" + q.Sort
	}
	return q.Sort
}

// FetchLine is the shell command that downloads a release.
func FetchLine(r ReleaseRow) string {
	return "curl -fLo " + shellQuote(r.File) + " " + shellQuote(r.URL)
}

// VerifyLine is the shell command that checks a downloaded release
// against its sha256; it prints "<file>: OK".
func VerifyLine(r ReleaseRow) string {
	return "echo " + shellQuote(r.SHA256+"  "+r.File) + " | sha256sum -c -"
}

// shellQuote quotes s for a POSIX shell unless it is plainly safe.
func shellQuote(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-/:@%+=,", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Shown is a device-reported string made safe to show: each Unicode
// bidirectional control (which can make "exe.txt" read as "txt.exe") and
// each C0 or C1 control character (terminal escapes, NUL) becomes U+FFFD,
// visible where it was. Tabs and newlines stay. Every string an agent
// reports goes through it on the way to a page (OrDash does it too).
func Shown(s string) string {
	if !strings.ContainsFunc(s, hidden) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if hidden(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

func hidden(r rune) bool {
	switch {
	case r == '\t' || r == '\n':
		return false
	case r < 0x20 || r >= 0x7f && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}
