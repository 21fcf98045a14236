package fleet

import (
	"strings"
	"testing"
)

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"mon,tue 02:00-04:00 Europe/Berlin", "mon,tue 02:00-04:00 Europe/Berlin", ""},
		{"Sat 22:00-06:00", "sat 22:00-06:00 UTC", ""},
		{"02:00-04:00", "daily 02:00-04:00 UTC", ""},
		{"daily 02:00-04:00 America/New_York", "daily 02:00-04:00 America/New_York", ""},
		{"  mon  01:00-02:00  UTC ", "mon 01:00-02:00 UTC", ""},
		{"someday 02:00-04:00", "", `window day "someday"`},
		{"mon 2-4", "", "want [DAYS] HH:MM-HH:MM"},
		{"mon 02:00-4pm", "", `window time "4pm"`},
		{"mon 02:00-04:00 Mars/Olympus", "", `window zone "Mars/Olympus"`},
		{"mon tue 02:00-04:00", "", "want [DAYS]"},
		{"", "", "want [DAYS]"},
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseWindow(%q) = %v, %v; want an error with %q", tt.in, w, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || w.String() != tt.want):
			t.Errorf("ParseWindow(%q) = %q, %v; want %q", tt.in, w.String(), err, tt.want)
		}
	}
}
