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
