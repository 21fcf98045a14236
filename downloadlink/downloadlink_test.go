package downloadlink

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	key := []byte("0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	query := func(path string) url.Values {
		u, err := url.Parse(path)
		if err != nil {
			t.Fatal(err)
		}
		return u.Query()
	}
	valid := Path(key, "update 1.0.zip", now.Add(Lifetime))
	if !strings.HasPrefix(valid, "/downloads/update%201.0.zip?exp=1800003600&sig=") {
		t.Fatalf("Path = %q", valid)
	}
	tests := []struct {
		name string
		key  []byte
		file string
		q    url.Values
		at   time.Time
		want error
	}{
		{"valid", key, "update 1.0.zip", query(valid), now, nil},
		{"valid until the last second", key, "update 1.0.zip", query(valid), now.Add(Lifetime - time.Nanosecond), nil},
		{"expired at exp", key, "update 1.0.zip", query(valid), now.Add(Lifetime), ErrExpired},
		{"another file", key, "update 2.0.zip", query(valid), now, ErrForged},
		{"another key", []byte("fedcba9876543210"), "update 1.0.zip", query(valid), now, ErrForged},
		{"no query", key, "update 1.0.zip", url.Values{}, now, ErrNoLink},
		{"key too short", key[:15], "update 1.0.zip", query(valid), now, ErrNoKey},
		{"signed, but exp is no time", key, "f", url.Values{"exp": {"soon"}, "sig": {mac(key, "f", "soon")}}, now, ErrExpired},
		{"sig appended to", key, "update 1.0.zip", query(valid + "00"), now, ErrForged},
	}
	for _, tt := range tests {
		if got := Check(tt.key, tt.file, tt.q, tt.at); !errors.Is(got, tt.want) {
			t.Errorf("%s: Check = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	key := []byte("0123456789abcdef")
	link := "http://fleet.example:8080" + Path(key, "kiosk 2.0.zip", time.Unix(1_800_000_000, 0))
	tests := []struct{ in, want string }{
		{"", ""},
		{"command exited with status 3", "command exited with status 3"},
		{"download: Get \"" + link + "\": dial tcp 10.0.0.1:8080: connect: connection refused",
			"download: Get \"http://fleet.example:8080/downloads/kiosk%202.0.zip\": dial tcp 10.0.0.1:8080: connect: connection refused"},
		{"GET " + link + ": 403 Forbidden: the download link was refused (expired?)",
			"GET http://fleet.example:8080/downloads/kiosk%202.0.zip: 403 Forbidden: the download link was refused (expired?)"},
		{"GET /downloads/u.zip?sig=00ff&exp=12 twice: /downloads/v.zip?exp=1&sig=ab",
			"GET /downloads/u.zip twice: /downloads/v.zip"},
		{"see https://example.com/docs?page=2", "see https://example.com/docs?page=2"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
		if strings.Contains(Redact(tt.in), "sig=") {
			t.Errorf("Redact(%q) keeps a signature", tt.in)
		}
	}
}
