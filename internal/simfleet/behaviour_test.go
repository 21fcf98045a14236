package simfleet

import (
	"testing"
)

func TestFails(t *testing.T) {
	b := Behaviour{Failures: []Failure{{Version: "2.0", Percent: 30}, {Version: "1.1", Percent: 50, Once: true}}}
	failing := 0
	for i := range 100 {
		if b.Fails("2.0.0", i, 1) != b.Fails("2.0", i, 3) {
			t.Fatalf("agent %d: 2.0 fails at one try and not another", i)
		}
		if b.Fails("2.0", i, 1) {
			failing++
		}
		if b.Fails("1.0", i, 1) {
			t.Errorf("agent %d fails 1.0, which no failure names", i)
		}
		if b.Fails("1.1", i, 2) {
			t.Errorf("agent %d fails 1.1 at its second try, want only the first", i)
		}
	}
	if failing != 30 {
		t.Errorf("%d of 100 agents fail 2.0, want 30", failing)
	}
	for start := range 10 {
		var fail []int
		for i := start; i < 100; i += 10 {
			if b.Fails("2.0", i, 1) {
				fail = append(fail, i)
			}
		}
		if len(fail) != 3 {
			t.Errorf("of the agents %d, %d, ..., %d fail 2.0: %v, want 3 (spread evenly)", start, start+10, start+90, fail)
		}
	}
}

func TestParseFailure(t *testing.T) {
	tests := []struct {
		in   string
		want Failure
		ok   bool
	}{
		{"2.0:30", Failure{Version: "2.0", Percent: 30}, true},
		{"1.1:100:once", Failure{Version: "1.1", Percent: 100, Once: true}, true},
		{"*:5%", Failure{Percent: 5}, true},
		{"2.0", Failure{}, false},
		{"2.0:101", Failure{}, false},
		{"2.0:x", Failure{}, false},
		{"2.0:30:always", Failure{}, false},
		{"not a version:30", Failure{}, false},
	}
	for _, tt := range tests {
		got, err := ParseFailure(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseFailure(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestBehaviourPerAgent(t *testing.T) {
	b := Behaviour{Labels: map[string]string{"site": "berlin"}, CanaryEvery: 4, Platforms: []string{"linux/amd64", "linux/arm64"}}
	for i, want := range []struct{ ring, arch string }{{"canary", "amd64"}, {"main", "arm64"}, {"main", "amd64"}, {"main", "arm64"}, {"canary", "amd64"}} {
		l := b.LabelsOf(i)
		if _, arch := b.PlatformOf(i); l["ring"] != want.ring || l["site"] != "berlin" || arch != want.arch {
			t.Errorf("agent %d: labels %v, arch %s; want ring=%s, site=berlin, %s", i, l, arch, want.ring, want.arch)
		}
	}
	if os, arch := (Behaviour{}).PlatformOf(7); os != "linux" || arch != "amd64" {
		t.Errorf("default platform %s/%s, want linux/amd64", os, arch)
	}
	if _, err := ParsePlatforms("linux/arm64, linux"); err == nil {
		t.Error(`ParsePlatforms("linux/arm64, linux") accepted an entry without an arch`)
	}
}
