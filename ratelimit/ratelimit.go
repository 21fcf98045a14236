// Package ratelimit gives each key (a device id, a client address) its own
// token bucket.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter gives each device (or any other key) its own token bucket, so
// that one agent flooding the broker is cut off without slowing any other.
// It is safe for concurrent use and forgets devices that have been quiet
// for a while, so its memory stays bounded by the number of recently
// active devices.
type Limiter struct {
	mu        sync.Mutex
	limit     rate.Limit
	burst     int
	devices   map[string]*bucket
	lastPrune time.Time
}

type bucket struct {
	lim      *rate.Limiter
	lastUse  time.Time
	lastWarn time.Time
}

// forgetAfter is how long a device's bucket outlives its last message.
const forgetAfter = 10 * time.Minute

// New allows each device perSecond messages on average, with
// bursts of up to burst.
func New(perSecond float64, burst int) *Limiter {
	return &Limiter{limit: rate.Limit(perSecond), burst: burst, devices: map[string]*bucket{}}
}

// Allow reports whether device may send one more message now. When it may
// not, warn is true at most once a minute per device, so that a flood is
// logged once rather than once per message.
func (l *Limiter) Allow(device string) (ok, warn bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) > time.Minute {
		for id, b := range l.devices {
			if now.Sub(b.lastUse) > forgetAfter {
				delete(l.devices, id)
			}
		}
		l.lastPrune = now
	}
	b := l.devices[device]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.devices[device] = b
	}
	b.lastUse = now
	if b.lim.AllowN(now, 1) {
		return true, false
	}
	if now.Sub(b.lastWarn) > time.Minute {
		b.lastWarn = now
		return false, true
	}
	return false, false
}
