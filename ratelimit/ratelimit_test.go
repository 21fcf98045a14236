package ratelimit

import "testing"

func TestLimiterIsPerDevice(t *testing.T) {
	l := New(1, 5)
	allowed, warned := 0, 0
	for range 100 {
		ok, warn := l.Allow("flood")
		if ok {
			allowed++
		}
		if warn {
			warned++
		}
	}
	if allowed < 5 || allowed > 6 {
		t.Errorf("flooding device: %d of 100 allowed, want the burst of 5 (6 if a token refilled)", allowed)
	}
	if warned != 1 {
		t.Errorf("flooding device: warned %d times, want once", warned)
	}
	if ok, _ := l.Allow("quiet"); !ok {
		t.Error("a quiet device was refused because another flooded")
	}
}
