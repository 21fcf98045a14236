package fleet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// RolloutSpec is what an operator asks for when creating a rollout.
type RolloutSpec struct {
	ID       string   `json:"id"`
	Version  string   `json:"version"`
	Selector Selector `json:"selector"`
	Group    string   `json:"group,omitempty"`
	// Waves default to DefaultWaves when empty.
	Waves         []Wave `json:"waves,omitempty"`
	MaxConcurrent int    `json:"max_concurrent,omitempty"`
}

// DefaultWaves are a rollout's waves when the operator names none: a 10%
// canary that pauses the rollout when more than 20% of it fails, then
// half the devices, then all of them, each to go on once 90% of its
// devices run the release.
func DefaultWaves() []Wave {
	return []Wave{
		{Name: "canary", Percent: 10, SuccessPercent: 90, ErrorPercent: 20},
		{Name: "half", Percent: 50, SuccessPercent: 90, ErrorPercent: 20},
		{Name: "all", Percent: 100, SuccessPercent: 90, ErrorPercent: 20},
	}
}

// ParseWaves parses the waves of a command line: "10,50,100" (cumulative
// percents), each optionally named ("canary:10"), or a selector in
// brackets for a wave of labelled devices ("canary:[ring=canary],50,100").
// successPercent and errorPercent apply to every wave.
func ParseWaves(s string, successPercent, errorPercent int) ([]Wave, error) {
	var waves []Wave
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		name, value, named := strings.Cut(part, ":")
		if !named {
			name, value = "", part
		}
		w := Wave{Name: strings.TrimSpace(name), SuccessPercent: successPercent, ErrorPercent: errorPercent}
		value = strings.TrimSpace(value)
		if strings.HasPrefix(value, "[") && strings.HasSuffix(value, "]") {
			sel, err := ParseSelector(strings.ReplaceAll(value[1:len(value)-1], ";", ","))
			if err != nil {
				return nil, fmt.Errorf("wave %d: %w", i+1, err)
			}
			w.Selector = &sel
		} else {
			p, err := strconv.Atoi(strings.TrimSuffix(value, "%"))
			if err != nil {
				return nil, fmt.Errorf("wave %d %q: want a percent (10) or a selector ([ring=canary])", i+1, part)
			}
			w.Percent = p
		}
		waves = append(waves, w)
	}
	return waves, nil
}

// NewRollout checks spec and returns the rollout it asks for, running,
// with wave 0 open: the rollout service assigns its members.
func NewRollout(spec RolloutSpec, by string, now time.Time) (Rollout, error) {
	if err := ValidateGroupName(spec.ID); err != nil {
		return Rollout{}, fmt.Errorf("rollout id: %w", err)
	}
	if _, err := wire.ParseVersion(spec.Version); err != nil {
		return Rollout{}, fmt.Errorf("rollout version %q: %w", spec.Version, err)
	}
	if spec.Group != "" {
		if err := ValidateGroupName(spec.Group); err != nil {
			return Rollout{}, fmt.Errorf("rollout group: %w", err)
		}
	}
	if err := spec.Selector.Match.Validate(); err != nil {
		return Rollout{}, fmt.Errorf("rollout selector: %w", err)
	}
	if spec.MaxConcurrent < 0 {
		return Rollout{}, errors.New("max_concurrent: want 0 (no bound) or more")
	}
	waves := spec.Waves
	if len(waves) == 0 {
		waves = DefaultWaves()
	}
	if err := validateWaves(waves); err != nil {
		return Rollout{}, err
	}
	now = now.UTC()
	waves = append([]Wave(nil), waves...)
	for i := range waves {
		if waves[i].Name == "" {
			waves[i].Name = fmt.Sprintf("wave %d", i+1)
		}
		waves[i].Counts, waves[i].Opened, waves[i].Done = WaveCounts{}, time.Time{}, time.Time{}
	}
	waves[0].Opened = now
	return Rollout{
		ID: spec.ID, Version: spec.Version, Selector: spec.Selector, Group: spec.Group,
		Waves: waves, MaxConcurrent: spec.MaxConcurrent, State: RolloutRunning,
		By: by, Created: now, Updated: now,
	}, nil
}

// validateWaves checks that percents grow and end at 100, and that each
// wave is either a percent or a selector.
func validateWaves(waves []Wave) error {
	if len(waves) > 10 {
		return errors.New("waves: at most 10")
	}
	last := 0
	for i, w := range waves {
		name := fmt.Sprintf("wave %d", i+1)
		if w.Name != "" {
			name = fmt.Sprintf("wave %q", w.Name)
		}
		switch {
		case len(w.Name) > 63:
			return fmt.Errorf("%s: name longer than 63 characters", name)
		case w.SuccessPercent < 0 || w.SuccessPercent > 100 || w.ErrorPercent < 0 || w.ErrorPercent > 100:
			return fmt.Errorf("%s: thresholds are percents, 0 to 100", name)
		case w.Soak < 0:
			return fmt.Errorf("%s: soak must not be negative", name)
		case w.Selector != nil && w.Percent != 0:
			return fmt.Errorf("%s: a percent or a selector, not both", name)
		case w.Selector != nil:
			if err := w.Selector.Match.Validate(); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			continue
		case w.Percent <= last || w.Percent > 100:
			return fmt.Errorf("%s: percent %d: want more than the wave before (%d) and at most 100", name, w.Percent, last)
		}
		last = w.Percent
	}
	if last != 100 {
		return fmt.Errorf("waves: the last percent wave is %d%%; a rollout ends at 100%%", last)
	}
	return nil
}

// ErrRolloutState is returned for an action the rollout's state does not
// allow (resume a rollout that is not paused, …).
var ErrRolloutState = errors.New("not allowed in the rollout's state")

func (r *Rollout) stateError(action string) error {
	return fmt.Errorf("%s rollout %s: it is %s: %w", action, r.ID, r.State, ErrRolloutState)
}

// Pause stops a running rollout from offering its release further.
func (r *Rollout) Pause(reason string, now time.Time) error {
	if r.State != RolloutRunning {
		return r.stateError("pause")
	}
	r.State, r.Reason, r.Updated = RolloutPaused, reason, now.UTC()
	return nil
}

// Resume lets a paused rollout go on. A wave still above its error
// threshold pauses it again, unless the release changed (Retarget).
func (r *Rollout) Resume(now time.Time) error {
	if r.State != RolloutPaused {
		return r.stateError("resume")
	}
	r.State, r.Reason, r.Updated = RolloutRunning, "", now.UTC()
	return nil
}

// Abort stops a rollout for good: nothing more is offered, and the
// release stays held back from the devices it has not reached.
func (r *Rollout) Abort(reason string, now time.Time) error {
	if r.State != RolloutRunning && r.State != RolloutPaused {
		return r.stateError("abort")
	}
	r.State, r.Reason, r.Updated = RolloutAborted, reason, now.UTC()
	return nil
}

// RollBack offers every device the rollout moved the version it ran
// before (Member.From).
func (r *Rollout) RollBack(reason string, now time.Time) error {
	if r.State == RolloutRolledBack {
		return r.stateError("roll back")
	}
	r.State, r.Reason, r.Updated = RolloutRolledBack, reason, now.UTC()
	return nil
}

// Retarget changes the release of a running or paused rollout (a fixed
// release after a bad one); its waves count the new release afresh.
func (r *Rollout) Retarget(version string, now time.Time) error {
	if r.State != RolloutRunning && r.State != RolloutPaused {
		return r.stateError("change the release of")
	}
	if _, err := wire.ParseVersion(version); err != nil {
		return fmt.Errorf("version %q: %w", version, err)
	}
	r.Version, r.SHA256, r.Updated = version, "", now.UTC()
	return nil
}

// Counts are the rollout's counts over all its waves.
func (r Rollout) Counts() WaveCounts {
	var c WaveCounts
	for _, w := range r.Waves {
		c.Devices += w.Counts.Devices
		c.Succeeded += w.Counts.Succeeded
		c.Failed += w.Counts.Failed
		c.InProgress += w.Counts.InProgress
		c.Waiting += w.Counts.Waiting
	}
	return c
}
