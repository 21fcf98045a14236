// Package fleet holds the server's domain types: devices, their installs
// and enrollments, the release catalog and the update history's events.
// It imports nothing but the standard library and wire, so that any part
// of the server (and a tool reading the store's JSON) can use them; the
// JetStream store that keeps them is package store. The agent never
// imports this package.
package fleet

import (
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// Device is one client machine as the server knows it.
type Device struct {
	ID              string        `json:"id"`
	Hostname        string        `json:"hostname"`
	Alive           bool          `json:"alive"`
	Version         string        `json:"version"`
	PreviousVersion string        `json:"previous_version,omitempty"`
	LastSeen        time.Time     `json:"last_seen"`
	FirstSeen       time.Time     `json:"first_seen"`
	HeartbeatMS     int64         `json:"heartbeat_interval_ms,omitempty"`
	AgentVersion    string        `json:"agent_version,omitempty"`
	Hardware        wire.Hardware `json:"hardware"`
	// Install is the latest install the device reported, in progress or
	// finished.
	Install *Install `json:"install,omitempty"`
	// Retries is the decision service's automatic retry of the target
	// after failed installs of it (holdback.go).
	Retries *Retries `json:"retries,omitempty"`
	// Labels are what the agent reports (--label); Tags are an
	// operator's, and win over a label of the same key (AllLabels).
	Labels Labels `json:"labels,omitempty"`
	Tags   Labels `json:"tags,omitempty"`
	// Pin holds the device on one version (Pin).
	Pin *Pin `json:"pin,omitempty"`
}

// Install is the state of a device's latest install.
type Install struct {
	OfferID    string     `json:"offer_id,omitempty"`
	Version    string     `json:"version"`
	State      wire.State `json:"state"`
	BytesDone  int64      `json:"bytes_done,omitempty"`
	BytesTotal int64      `json:"bytes_total,omitempty"`
	Detail     string     `json:"detail,omitempty"`
	Output     string     `json:"output,omitempty"`
	Started    time.Time  `json:"started"`
	Updated    time.Time  `json:"updated"`
}

// Release is one valid update zip in the catalog.
type Release struct {
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	SHA256      string    `json:"sha256"`
	Size        int64     `json:"size"`
	Command     string    `json:"command"`
	File        string    `json:"file"`
	Description string    `json:"description,omitempty"`
	Channel     string    `json:"channel,omitempty"`
	Platforms   []string  `json:"platforms,omitempty"`
	Added       time.Time `json:"added"`
	// Signature is the publisher's signature of the zip (standard base64),
	// from the .sig file beside it; decision puts it in every offer.
	Signature string `json:"signature,omitempty"`
	// SignatureState says what the catalog knows of the signature, for
	// the dashboard: one of the Signature* states.
	SignatureState string `json:"signature_state"`
}

// The signature states of a release.
const (
	// SignatureVerified: signed, and the signature verifies against the
	// server's publisher key. With a publisher key configured, every
	// release in the catalog is in this state.
	SignatureVerified = "verified"
	// SignatureUnverified: a signature is there, but the server has no
	// publisher key to check it with; agents that have one still do.
	SignatureUnverified = "unverified"
	// SignatureUnsigned: no signature (allowed only without a publisher
	// key).
	SignatureUnsigned = "unsigned"
)

// Refused is a zip in the updates folder that is not a valid release.
type Refused struct {
	File   string    `json:"file"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// Catalog is the whole release catalog, written as one value so that a
// change is atomic: a refused zip changes nothing else.
type Catalog struct {
	// Releases are sorted newest version first.
	Releases []Release `json:"releases"`
	Refused  []Refused `json:"refused"`
	// Target is the version offered to every device below it; empty when
	// nothing is to be offered. TargetReason says why.
	Target       string    `json:"target"`
	TargetReason string    `json:"target_reason"`
	Updated      time.Time `json:"updated"`
}

// Release returns the release with the given version.
func (c Catalog) Release(version string) (Release, bool) {
	for _, r := range c.Releases {
		if c, err := wire.CompareVersions(r.Version, version); err == nil && c == 0 {
			return r, true
		}
	}
	return Release{}, false
}

// TargetRelease returns the release every device should run.
func (c Catalog) TargetRelease() (Release, bool) {
	if c.Target == "" {
		return Release{}, false
	}
	return c.Release(c.Target)
}

// EventKind names what happened in a history event.
type EventKind string

// The history event kinds.
const (
	EventRegistered      EventKind = "registered"
	EventConnected       EventKind = "connected"
	EventDisconnected    EventKind = "disconnected"
	EventHardwareChanged EventKind = "hardware_changed"
	EventOffered         EventKind = "offered"
	EventDownloading     EventKind = EventKind(wire.StateDownloading)
	EventVerifying       EventKind = EventKind(wire.StateVerifying)
	EventInstalling      EventKind = EventKind(wire.StateInstalling)
	EventInstalled       EventKind = EventKind(wire.StateInstalled)
	EventFailed          EventKind = EventKind(wire.StateFailed)
	EventEnrolled        EventKind = "enrolled"
	EventPending         EventKind = "pending_approval"
	EventApproved        EventKind = "approved"
	EventRefused         EventKind = "refused"
	EventRevoked         EventKind = "revoked"
	EventDeleted         EventKind = "deleted"
	// EventHeldBack: the decision stopped offering a release to a device
	// whose installs of it kept failing (Retries).
	EventHeldBack EventKind = "held_back"
)

// Event is one entry of the append-only update history.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Device  string    `json:"device"`
	Event   EventKind `json:"event"`
	Version string    `json:"version,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// EventFilter selects history events. Zero fields select everything.
type EventFilter struct {
	Device  string
	Kind    EventKind
	Version string
	// Limit keeps only the newest Limit matching events (all when 0).
	Limit int
}

// Match reports whether e has the filter's kind and version. The device
// is matched by the reader, which reads only that device's subject.
func (f EventFilter) Match(e Event) bool {
	return (f.Kind == "" || e.Event == f.Kind) && (f.Version == "" || e.Version == f.Version)
}
