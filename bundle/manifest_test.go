package bundle

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	field := func(name, value string) string {
		return fmt.Sprintf(`{"name":"n","version":"1.0","command":"c",%q:%q}`, name, value)
	}
	platforms := func(n int, each string) string {
		p := make([]string, n)
		for i := range p {
			p[i] = fmt.Sprintf("%q", each)
		}
		return `{"name":"n","version":"1.0","command":"c","platforms":[` + strings.Join(p, ",") + `]}`
	}
	tests := []struct {
		name    string
		data    string
		want    Manifest
		wantErr string // empty: no error
	}{
		{name: "minimal", data: validManifest, want: Manifest{Name: "Update 1", Version: "1.2.0", Command: "sh install.sh"}},
		{name: "1.10", data: `{"name":"n","version":"1.10","command":"c"}`, want: Manifest{Name: "n", Version: "1.10", Command: "c"}},
		{name: "pre-release", data: `{"name":"n","version":"2.0-beta.1","command":"c"}`, want: Manifest{Name: "n", Version: "2.0-beta.1", Command: "c"}},
		{name: "all fields", data: `{"name":"n","version":"1.0","command":"c","description":"d","channel":"stable","platforms":["linux/amd64","linux/arm64"]}`,
			want: Manifest{Name: "n", Version: "1.0", Command: "c", Description: "d", Channel: "stable", Platforms: []string{"linux/amd64", "linux/arm64"}}},
		{name: "unknown fields ignored", data: `{"name":"n","version":"1.0","command":"c","checksum":"abc","link":{"a":[1,2]}}`, want: Manifest{Name: "n", Version: "1.0", Command: "c"}},
		{name: "byte order mark", data: "\ufeff" + validManifest, want: Manifest{Name: "Update 1", Version: "1.2.0", Command: "sh install.sh"}},
		{name: "longest values", data: fmt.Sprintf(`{"name":%q,"version":"1.0","command":%q}`, long(256), long(4096)), want: Manifest{Name: long(256), Version: "1.0", Command: long(4096)}},
		{name: "most platforms", data: platforms(32, long(64)), want: Manifest{Name: "n", Version: "1.0", Command: "c", Platforms: strings.Split(strings.Repeat(long(64)+" ", 31)+long(64), " ")}},

		{name: "empty object", data: `{}`, wantErr: "manifest.json: name: required; version: required; command: required"},
		{name: "missing name", data: `{"version":"1.0","command":"c"}`, wantErr: "manifest.json: name: required"},
		{name: "blank name", data: `{"name":"  ","version":"1.0","command":"c"}`, wantErr: "name: required"},
		{name: "missing version", data: `{"name":"n","command":"c"}`, wantErr: "manifest.json: version: required"},
		{name: "missing command", data: `{"name":"n","version":"1.0"}`, wantErr: "manifest.json: command: required"},
		{name: "bad version", data: `{"name":"n","version":"latest","command":"c"}`, wantErr: `manifest.json: version "latest": not a version like 1.2.0`},
		{name: "version too long", data: fmt.Sprintf(`{"name":"n","version":"1.%s","command":"c"}`, strings.Repeat("0", 70)), wantErr: "version longer than 64 bytes"},
		{name: "version a number", data: `{"name":"n","version":1.2,"command":"c"}`, wantErr: "manifest.json: version: want a string, got number"},
		{name: "platforms a string", data: `{"name":"n","version":"1.0","command":"c","platforms":"linux"}`, wantErr: "platforms: want a list of strings, got string"},
		{name: "huge name", data: fmt.Sprintf(`{"name":%q,"version":"1.0","command":"c"}`, long(257)), wantErr: "name: longer than 256 bytes"},
		{name: "huge command", data: fmt.Sprintf(`{"name":"n","version":"1.0","command":%q}`, long(4097)), wantErr: "command: longer than 4096 bytes"},
		{name: "huge description", data: field("description", long(4097)), wantErr: "description: longer than 4096 bytes"},
		{name: "huge channel", data: field("channel", long(65)), wantErr: "channel: longer than 64 bytes"},
		{name: "too many platforms", data: platforms(33, "linux"), wantErr: "platforms: more than 32 entries"},
		{name: "huge platform", data: platforms(1, long(65)), wantErr: "platforms[0]: want 1 to 64 bytes"},
		{name: "empty platform", data: platforms(2, ""), wantErr: "platforms[0]: want 1 to 64 bytes"},
		{name: "huge file", data: field("description", "x") + strings.Repeat(" ", 64<<10), wantErr: "manifest.json: larger than 64.0 KiB"},
		{name: "not JSON", data: "name = Update 1", wantErr: "manifest.json: not valid JSON"},
		{name: "empty", data: "", wantErr: "manifest.json: not valid JSON"},
		{name: "truncated", data: validManifest[:20], wantErr: "not valid JSON"},
		{name: "trailing data", data: validManifest + "{}", wantErr: "not valid JSON"},
		{name: "array", data: `[{"name":"n","version":"1.0","command":"c"}]`, wantErr: "manifest.json: want a JSON object, got array"},
		{name: "null", data: `null`, wantErr: "name: required"},
		{name: "the seed system's line", data: `'Update 1', '1.0', 'abc', '/downloads/update1', 'tarxyz'`, wantErr: "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseManifest([]byte(tt.data))
			if tt.wantErr == "" {
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Errorf("got %+v, %v; want %+v, nil", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %v, want a refusal containing %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, Manifest{}) {
				t.Errorf("got manifest %+v with the error, want none", got)
			}
		})
	}
}
