package fleet

import (
	"time"
)

// RolloutState is where a rollout stands.
type RolloutState string

// The rollout states. Running offers the release to the devices of every
// open wave; Paused offers nothing more (an operator's pause, or the
// automatic one when a wave's failures pass its error threshold, with
// the reason in Rollout.Reason); Completed: every wave is done and the
// release is the target of every device in scope. Aborted offers
// nothing more and keeps the release from the devices it has not
// reached; RolledBack offers each device the rollout moved the version
// it ran before (Member.From), as a rollback.
const (
	RolloutRunning    RolloutState = "running"
	RolloutPaused     RolloutState = "paused"
	RolloutCompleted  RolloutState = "completed"
	RolloutAborted    RolloutState = "aborted"
	RolloutRolledBack RolloutState = "rolled_back"
)

// Active reports whether a rollout in state st still decides who gets its
// release: every state but Completed does, holding the release back from
// the devices it has not reached.
func (st RolloutState) Active() bool { return st != RolloutCompleted }

// Rollout moves a selection of devices to one release, wave by wave.
type Rollout struct {
	// ID names the rollout (ValidateGroupName's form).
	ID string `json:"id"`
	// Version is the release rolled out; SHA256 is filled in once the
	// release is in the catalog (a rollout may be created before its zip
	// is dropped, and waits for it). An operator may change the version
	// of a paused rollout (a fixed release); its waves' failures then
	// count afresh.
	Version string `json:"version"`
	SHA256  string `json:"sha256,omitempty"`
	// Versions are every version the rollout has rolled out: Version,
	// and those it had before an operator changed it (written by the
	// rollout service). An active rollout holds them all back from the
	// devices it has not reached: a bad release it was stopped for does
	// not reach the fleet as the catalog's target while the fixed one
	// is awaited.
	Versions []string `json:"versions,omitempty"`
	// Selector chooses the devices in scope; Group, when set, names a
	// group whose selector does.
	Selector Selector `json:"selector"`
	Group    string   `json:"group,omitempty"`
	Waves    []Wave   `json:"waves"`
	// MaxConcurrent bounds the installs in progress at once (0: no bound).
	MaxConcurrent int `json:"max_concurrent,omitempty"`

	State RolloutState `json:"state"`
	// Reason says why the rollout is paused, completed, aborted or rolled
	// back, in one line.
	Reason string `json:"reason,omitempty"`
	// Wave is the index of the last open wave: waves 0..Wave are offered
	// the release while the rollout runs.
	Wave int `json:"wave"`
	// Members are the devices in scope, by id, with their wave: assigned
	// when the rollout starts, and as devices come online or start
	// matching, so that a restart resumes exactly where it stood.
	Members map[string]Member `json:"members,omitempty"`
	// Samples are the rollout's counts over time, for its chart; at most
	// MaxSamples, thinned evenly as it grows.
	Samples []Sample `json:"samples,omitempty"`

	By      string    `json:"by,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// MaxSamples bounds a rollout's Samples.
const MaxSamples = 240

// Member is one device's place in a rollout.
type Member struct {
	Wave int `json:"wave"`
	// From is the version the device ran when it joined, offered back on
	// a rollback.
	From string `json:"from,omitempty"`
}

// Wave is one step of a rollout.
type Wave struct {
	Name string `json:"name"`
	// Percent of the devices in scope (cumulative: the waves 10, 50, 100
	// reach 10%, then 50%, then every device), or Selector: the devices
	// in scope that match it (a canary group).
	Percent  int       `json:"percent,omitempty"`
	Selector *Selector `json:"selector,omitempty"`
	// SuccessPercent of the wave's devices must run the release for the
	// next wave to open (100 when 0); ErrorPercent of them failing
	// pauses the rollout (never when 0).
	SuccessPercent int `json:"success_percent,omitempty"`
	ErrorPercent   int `json:"error_percent,omitempty"`
	// Soak is how long the wave must have met its success threshold
	// before the next wave opens.
	Soak Duration `json:"soak,omitempty"`

	// Counts are the wave's devices as the rollout service last counted
	// them.
	Counts WaveCounts `json:"counts"`
	Opened time.Time  `json:"opened,omitzero"`
	Done   time.Time  `json:"done,omitzero"`
}

// WaveCounts are a wave's devices by how they stand with the release.
type WaveCounts struct {
	Devices    int `json:"devices"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	InProgress int `json:"in_progress"`
	Waiting    int `json:"waiting"`
}

// Sample is a rollout's counts, over all its waves, at one time.
type Sample struct {
	Time time.Time `json:"time"`
	WaveCounts
}

// Duration is a time.Duration that encodes as a string ("10m").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// AuditEntry is one operator action, kept in the audit log.
type AuditEntry struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Who acted: "admin" with the address the request came from, for
	// the admin token at the API or a dashboard session.
	Who string `json:"who"`
	// Action names what was done: "sign-in", "rollout.create",
	// "device.pin", "device.tag", …
	Action string `json:"action"`
	// Target is what it was done to: a device id, a rollout or group
	// name.
	Target string `json:"target,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Rolled reports whether version is one the rollout rolls or rolled out
// (Version or one of Versions).
func (r Rollout) Rolled(version string) bool {
	if sameVersion(version, r.Version) {
		return true
	}
	for _, v := range r.Versions {
		if sameVersion(version, v) {
			return true
		}
	}
	return false
}
