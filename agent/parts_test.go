package agent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/thinfleet/thinfleet/wire"
)

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
	}{
		{"empty", 8, nil},
		{"short", 8, []string{"abc"}},
		{"exactly full", 8, []string{"abcdefgh"}},
		{"wraps", 8, []string{"abcdef", "ghij"}},
		{"many small", 8, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}},
		{"one larger than the buffer", 8, []string{"xy", "0123456789abcdef"}},
		{"fills to the end then more", 8, []string{"abcd", "efgh", "ij"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTailBuffer(tt.max)
			all := ""
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
				all += w
			}
			want := all[max(0, len(all)-tt.max):]
			if got := b.String(); got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
		})
	}
}

func TestTailBufferUTF8(t *testing.T) {
	b := newTailBuffer(6)
	// 11 bytes: the last 6 start mid-rune, and U+FFFD for \xff takes
	// three bytes, so only one é is left within the 6.
	b.Write([]byte("ééééé\xff"))
	got := b.String()
	if !utf8.ValidString(got) || got != "é\uFFFD" {
		t.Errorf("String() = %q, want %q", got, "é\uFFFD")
	}
}

func TestValidHeadAndTail(t *testing.T) {
	tests := []struct {
		s          string
		n          int
		head, tail string
	}{
		{"hello", 10, "hello", "hello"},
		{"hello", 3, "hel", "llo"},
		{"aéb", 2, "a", "b"},
		{"aéb", 3, "aé", "éb"},
		{"a\xffb", 10, "a\uFFFDb", "a\uFFFDb"},
	}
	for _, tt := range tests {
		if got := validHead(tt.s, tt.n); got != tt.head {
			t.Errorf("validHead(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.head)
		}
		if got := validTail(tt.s, tt.n); got != tt.tail {
			t.Errorf("validTail(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.tail)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in           string
		start, total int64
		wantErr      bool
	}{
		{"bytes 100-199/200", 100, 200, false},
		{"bytes 0-0/1", 0, 1, false},
		{"bytes 5-9/*", 5, -1, false},
		{"", 0, 0, true},
		{"bytes */200", 0, 0, true},
		{"bytes -5-9/10", 0, 0, true},
		{"items 0-1/2", 0, 0, true},
		{"bytes 0-1/x", 0, 0, true},
	}
	for _, tt := range tests {
		start, total, err := parseContentRange(tt.in)
		if (err != nil) != tt.wantErr || !tt.wantErr && (start != tt.start || total != tt.total) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, err %v", tt.in, start, total, err, tt.start, tt.total, tt.wantErr)
		}
	}
}

func TestNewID(t *testing.T) {
	tests := []struct {
		host, want string
	}{
		{"kiosk-7", "kiosk-7-abcd"},
		{"Kiosk7.shop.example.com", "kiosk7-abcd"},
		{"weird name!", "weirdname-abcd"},
		{"", "agent-abcd"},
		{"---", "agent-abcd"},
		{strings.Repeat("h", 100), strings.Repeat("h", 59) + "-abcd"},
	}
	for _, tt := range tests {
		got := newID(tt.host, "abcd")
		if got != tt.want || wire.ValidateID(got) != nil {
			t.Errorf("newID(%q) = %q, want %q (and valid)", tt.host, got, tt.want)
		}
	}
}

func TestResolveID(t *testing.T) {
	dir := t.TempDir()
	first, err := resolveID("", dir)
	if err != nil || wire.ValidateID(first) != nil {
		t.Fatalf("resolveID generated %q, %v; want a valid id", first, err)
	}
	again, err := resolveID("", dir)
	if err != nil || again != first {
		t.Errorf("second start got id %q, %v; want the kept %q", again, err, first)
	}
	if got, err := resolveID("given_1", dir); got != "given_1" || err != nil {
		t.Errorf("resolveID(given_1) = %q, %v", got, err)
	}
	if _, err := resolveID("no.dots", dir); err == nil {
		t.Error("resolveID accepted an invalid given id")
	}
	writeFile(t, filepath.Join(dir, "id"), "bad id\n")
	if _, err := resolveID("", dir); err == nil {
		t.Error("resolveID accepted an invalid kept id")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, body := range []string{"first", "second, longer"} {
		if err := writeFileAtomic(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != body {
			t.Errorf("file = %q, want %q", got, body)
		}
	}
	if got := listDir(t, dir); len(got) != 1 {
		t.Errorf("folder holds %v, want only state.json", got)
	}
	if err := writeFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("writing into a missing folder succeeded")
	}
}

func TestUnreadableStateMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	writeFile(t, path, "{not json")
	s, err := openStore(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if v := s.get().Version; v != "" {
		t.Errorf("version = %q, want none", v)
	}
	names := listDir(t, dir)
	if len(names) != 1 || !strings.HasPrefix(names[0], "state.json.broken-") {
		t.Errorf("folder holds %v, want the broken state moved aside", names)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, 250 * time.Millisecond},
		{1, 250 * time.Millisecond},
		{2, 500 * time.Millisecond},
		{5, 4 * time.Second},
		{8, 30 * time.Second},
		{1000, 30 * time.Second},
	}
	for _, tt := range tests {
		got := backoff(reconnectBase, reconnectMax, tt.n)
		if got != tt.want {
			t.Errorf("backoff(%d) = %s, want %s", tt.n, got, tt.want)
		}
		if j := reconnectDelay(tt.n); j < got/2 || j >= got {
			t.Errorf("reconnectDelay(%d) = %s, want in [%s, %s)", tt.n, j, got/2, got)
		}
	}
}
