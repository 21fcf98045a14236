// Package wire is the contract between thinfleet agents and the server:
// the NATS subjects, one Go type per subject, and their validation.
//
// Both the agent and the services import it; it imports nothing of theirs.
// Every message is JSON. Unknown fields are ignored, and every message is
// validated on receipt: a decoder returns an error for anything malformed,
// oversized or missing a required field, and never panics.
package wire

import (
	"errors"
	"fmt"
	"strings"
)

// MaxMessageSize is the largest message any decoder accepts, in bytes.
const MaxMessageSize = 64 << 10

// The subject prefixes. A per-device subject is the prefix, a dot and the
// device id; use the constructors below rather than assembling one.
const (
	prefixHWReport         = "hw.report."
	prefixVersionInstalled = "version.installed."
	prefixHeartbeat        = "agent.heartbeat."
	prefixOffer            = "update.offer."
	prefixStatus           = "update.status."
)

// Wildcard subjects the services subscribe to, one per message kind.
const (
	AllHWReports         = prefixHWReport + "*"
	AllVersionsInstalled = prefixVersionInstalled + "*"
	AllHeartbeats        = prefixHeartbeat + "*"
	AllOffers            = prefixOffer + "*"
	AllStatuses          = prefixStatus + "*"
)

// AgentStreamSubjects are the agent subjects whose messages the server
// keeps, so that a message an agent saw acknowledged survives a server
// crash and reaches every service even if it was down at the time. An
// agent publishes them as JetStream publishes (a request whose reply
// subject is under its own inbox, AgentInboxPrefix) and gets a JetStream
// acknowledgement back. Heartbeats are not kept: they are only worth
// anything while fresh.
var AgentStreamSubjects = []string{AllHWReports, AllVersionsInstalled, AllStatuses}

// HWReportSubject is where device id reports its hardware.
func HWReportSubject(id string) string { return prefixHWReport + id }

// VersionInstalledSubject is where device id reports its installed version.
func VersionInstalledSubject(id string) string { return prefixVersionInstalled + id }

// HeartbeatSubject is where device id sends its heartbeats.
func HeartbeatSubject(id string) string { return prefixHeartbeat + id }

// OfferSubject is where device id listens for update offers.
func OfferSubject(id string) string { return prefixOffer + id }

// StatusSubject is where device id reports the progress of an install.
func StatusSubject(id string) string { return prefixStatus + id }

// Kind names the message kind a subject carries.
type Kind string

// The message kinds, one per subject prefix.
const (
	KindHWReport         Kind = "hw.report"
	KindVersionInstalled Kind = "version.installed"
	KindHeartbeat        Kind = "agent.heartbeat"
	KindOffer            Kind = "update.offer"
	KindStatus           Kind = "update.status"
)

// ParseSubject splits a per-device subject into its kind and device id.
// The id is the one services trust: it comes from the subject the broker
// let the sender publish on, never from a payload field.
func ParseSubject(subject string) (Kind, string, error) {
	for _, p := range []string{prefixHWReport, prefixVersionInstalled, prefixHeartbeat, prefixOffer, prefixStatus} {
		if id, ok := strings.CutPrefix(subject, p); ok {
			if err := ValidateID(id); err != nil {
				return "", "", fmt.Errorf("subject %q: %w", truncate(subject, 100), err)
			}
			return Kind(strings.TrimSuffix(p, ".")), id, nil
		}
	}
	return "", "", fmt.Errorf("subject %q: not a thinfleet device subject", truncate(subject, 100))
}

// MaxIDLength is the longest device id.
const MaxIDLength = 64

// ErrInvalidID is returned for a device id outside [A-Za-z0-9_-]{1,64}.
var ErrInvalidID = errors.New("invalid device id: want 1 to 64 characters of A-Z a-z 0-9 _ -")

// ValidateID reports whether id is a valid device id.
func ValidateID(id string) error {
	if len(id) == 0 || len(id) > MaxIDLength {
		return ErrInvalidID
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return ErrInvalidID
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
