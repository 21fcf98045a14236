package wire

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	many := func(n int) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf("k%d=v", i))
		}
		return strings.Join(parts, ",")
	}
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{"site=berlin,ring=canary", map[string]string{"site": "berlin", "ring": "canary"}, ""},
		{" site = berlin , gpu ,", map[string]string{"site": "berlin", "gpu": ""}, ""},
		{"", map[string]string{}, ""},
		{"a.b_c-d=1.2.3", map[string]string{"a.b_c-d": "1.2.3"}, ""},
		{strings.Repeat("k", 63) + "=" + strings.Repeat("v", 63), map[string]string{strings.Repeat("k", 63): strings.Repeat("v", 63)}, ""},
		{strings.Repeat("k", 64) + "=v", nil, "label key"},
		{"k=" + strings.Repeat("v", 64), nil, "label k value"},
		{"=v", nil, `label key ""`},
		{"-k=v", nil, `label key "-k"`},
		{"k=v w", nil, `label k value "v w"`},
		{"k=ü", nil, `label k value "ü"`},
		{"k=a,k=b", nil, "label k given twice"},
		{"k=a,k=a", map[string]string{"k": "a"}, ""},
		{many(32), nil, ""},
		{many(33), nil, "labels: 33, at most 32"},
	}
	for _, tt := range tests {
		got := map[string]string{}
		err := ParseLabels(tt.in, got)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseLabels(%q) = %v", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseLabels(%q) = %v, want an error with %q", tt.in, err, tt.wantErr)
		case tt.want != nil && !maps.Equal(got, tt.want):
			t.Errorf("ParseLabels(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestHWReportLabels: a report whose labels break the rules is refused
// whole, as invalid.
func TestHWReportLabels(t *testing.T) {
	tests := []struct {
		json string
		ok   bool
	}{
		{`{"hardware":{},"labels":{"site":"berlin","gpu":""}}`, true},
		{`{"hardware":{}}`, true},
		{`{"hardware":{},"labels":{"site":"ber lin"}}`, false},
		{`{"hardware":{},"labels":{"":"x"}}`, false},
		{`{"hardware":{},"labels":{"site":1}}`, false},
	}
	for _, tt := range tests {
		_, err := Decode[HWReport]([]byte(tt.json))
		if (err == nil) != tt.ok {
			t.Errorf("Decode(%s) = %v, want ok %v", tt.json, err, tt.ok)
		}
	}
}
