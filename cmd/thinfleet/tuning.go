package main

import "time"

// tuning is what a test in this package sets on the services that no
// flag does: their clock (maintenance windows, soak times) and how
// often the decision and rollout services look at what time changes.
// The zero value leaves every service's default; run, which main calls,
// passes nothing else.
type tuning struct {
	// now is the services' clock; nil is time.Now.
	now func() time.Time
	// windowCheck is how often the decision looks whether a window
	// opened (decision.Options.WindowCheck); rolloutInterval how often
	// the rollouts are moved (rollout.Options.Interval). 0: defaults.
	windowCheck, rolloutInterval time.Duration
}
