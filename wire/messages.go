package wire

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Hardware is what an agent knows about its machine.
type Hardware struct {
	Hostname        string      `json:"hostname"`
	OS              string      `json:"os"`
	Platform        string      `json:"platform"`
	PlatformVersion string      `json:"platform_version"`
	KernelVersion   string      `json:"kernel_version"`
	Arch            string      `json:"arch"`
	CPUModel        string      `json:"cpu_model"`
	CPUCores        int         `json:"cpu_cores"`
	CPUThreads      int         `json:"cpu_threads"`
	MemoryTotal     uint64      `json:"memory_total"`
	Disks           []Disk      `json:"disks,omitempty"`
	Interfaces      []Interface `json:"interfaces,omitempty"`
	BootTime        time.Time   `json:"boot_time,omitzero"`
}

// Disk is one mounted filesystem; sizes are bytes.
type Disk struct {
	Mount  string `json:"mount"`
	FSType string `json:"fstype,omitempty"`
	Total  uint64 `json:"total"`
	Free   uint64 `json:"free"`
}

// Interface is one network interface.
type Interface struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
}

// Fingerprint returns the hardware with the fields that change on their
// own (free disk space, boot time) cleared, so two reports of the same
// machine compare equal.
func (h Hardware) Fingerprint() Hardware {
	f := h
	f.BootTime = time.Time{}
	f.Disks = make([]Disk, len(h.Disks))
	for i, d := range h.Disks {
		d.Free = 0
		f.Disks[i] = d
	}
	return f
}

// Validate reports whether h is within the limits a service accepts.
func (h Hardware) Validate() error {
	var errs []error
	check := func(field, v string, max int) {
		if len(v) > max {
			errs = append(errs, fmt.Errorf("%s: longer than %d bytes", field, max))
		}
	}
	check("hostname", h.Hostname, 255)
	check("os", h.OS, 64)
	check("platform", h.Platform, 128)
	check("platform_version", h.PlatformVersion, 128)
	check("kernel_version", h.KernelVersion, 128)
	check("arch", h.Arch, 64)
	check("cpu_model", h.CPUModel, 256)
	if h.CPUCores < 0 || h.CPUThreads < 0 || h.CPUCores > 1<<16 || h.CPUThreads > 1<<16 {
		errs = append(errs, errors.New("cpu_cores, cpu_threads: out of range"))
	}
	if len(h.Disks) > 64 {
		errs = append(errs, errors.New("disks: more than 64"))
	}
	for _, d := range h.Disks {
		check("disks.mount", d.Mount, 512)
		check("disks.fstype", d.FSType, 64)
	}
	if len(h.Interfaces) > 64 {
		errs = append(errs, errors.New("interfaces: more than 64"))
	}
	for _, n := range h.Interfaces {
		check("interfaces.name", n.Name, 64)
		check("interfaces.mac", n.MAC, 64)
		if len(n.Addresses) > 32 {
			errs = append(errs, errors.New("interfaces.addresses: more than 32"))
		}
		for _, a := range n.Addresses {
			check("interfaces.addresses", a, 64)
		}
	}
	return errors.Join(errs...)
}

// HWReport is sent on hw.report.<id>: on connect and whenever the
// hardware changes.
type HWReport struct {
	Hardware     Hardware `json:"hardware"`
	AgentVersion string   `json:"agent_version,omitempty"`
	// Labels are the agent's own (--label site=berlin), within the
	// limits of ValidateLabels.
	Labels map[string]string `json:"labels,omitempty"`
}

// Validate implements the check every decoder runs.
func (m HWReport) Validate() error {
	var errs []error
	if len(m.AgentVersion) > 64 {
		errs = append(errs, errors.New("agent_version: longer than 64 bytes"))
	}
	return errors.Join(append(errs, ValidateLabels(m.Labels), m.Hardware.Validate())...)
}

// VersionInstalled is sent on version.installed.<id>: on connect and after
// every install. Version is empty on a device that has never installed a
// thinfleet update.
type VersionInstalled struct {
	Version         string `json:"version"`
	PreviousVersion string `json:"previous_version,omitempty"`
}

// Validate implements the check every decoder runs.
func (m VersionInstalled) Validate() error {
	if m.Version == "" {
		return validateOptionalVersion("previous_version", m.PreviousVersion)
	}
	return errors.Join(validateVersion("version", m.Version), validateOptionalVersion("previous_version", m.PreviousVersion))
}

// Heartbeat is sent on agent.heartbeat.<id> every IntervalMS milliseconds.
// A device is notAlive once three of its intervals pass without one.
type Heartbeat struct {
	IntervalMS int64 `json:"interval_ms"`
	Seq        int64 `json:"seq,omitempty"`
}

// MinHeartbeat and MaxHeartbeat bound the interval an agent may announce.
const (
	MinHeartbeat = 100 * time.Millisecond
	MaxHeartbeat = 10 * time.Minute
)

// Interval is the heartbeat interval as a duration.
func (m Heartbeat) Interval() time.Duration { return time.Duration(m.IntervalMS) * time.Millisecond }

// Validate implements the check every decoder runs.
func (m Heartbeat) Validate() error {
	if d := m.Interval(); d < MinHeartbeat || d > MaxHeartbeat {
		return fmt.Errorf("interval_ms: %d outside [%d, %d]", m.IntervalMS, MinHeartbeat.Milliseconds(), MaxHeartbeat.Milliseconds())
	}
	return nil
}

// Offer is sent on update.offer.<id>: install this release.
type Offer struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Version string    `json:"version"`
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	Command string    `json:"command"`
	URL     string    `json:"url"`
	Time    time.Time `json:"time"`
	// Retry asks the agent to try a version again that failed before.
	Retry bool `json:"retry,omitempty"`
	// Rollback allows a version lower than the installed one.
	Rollback bool `json:"rollback,omitempty"`
	// Signature is the publisher's detached signature of the zip
	// (Ed25519ph, standard base64), when the release was signed. An agent
	// given the publisher key installs nothing without one that verifies.
	Signature string `json:"signature,omitempty"`
}

// OfferLifetime is how long an offer stands: its download link expires
// then, and an agent refuses an offer older than that as a replay.
const OfferLifetime = time.Hour

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate implements the check every decoder runs.
func (m Offer) Validate() error {
	var errs []error
	if m.ID == "" || len(m.ID) > 64 {
		errs = append(errs, errors.New("id: required, at most 64 bytes"))
	}
	if m.Name == "" || len(m.Name) > 256 {
		errs = append(errs, errors.New("name: required, at most 256 bytes"))
	}
	errs = append(errs, validateVersion("version", m.Version))
	if !sha256Hex.MatchString(m.SHA256) {
		errs = append(errs, errors.New("sha256: want 64 lower-case hex digits"))
	}
	if m.Size <= 0 {
		errs = append(errs, errors.New("size: must be positive"))
	}
	if m.Command == "" || len(m.Command) > MaxCommandLength {
		errs = append(errs, fmt.Errorf("command: required, at most %d bytes", MaxCommandLength))
	}
	if u, err := url.Parse(m.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(m.URL) > 2048 {
		errs = append(errs, errors.New("url: want an absolute http or https URL"))
	}
	if m.Signature != "" {
		if sig, err := base64.StdEncoding.DecodeString(m.Signature); err != nil || len(sig) != 64 {
			errs = append(errs, errors.New("signature: want 64 bytes in standard base64"))
		}
	}
	return errors.Join(errs...)
}

// MaxCommandLength is the longest install command.
const MaxCommandLength = 4096

// State is a step of an install, as reported on update.status.<id>.
type State string

// The states of an install, in order; it ends in Installed or Failed.
const (
	StateDownloading State = "downloading"
	StateVerifying   State = "verifying"
	StateInstalling  State = "installing"
	StateInstalled   State = "installed"
	StateFailed      State = "failed"
)

// Status is sent on update.status.<id> as an install moves on.
type Status struct {
	OfferID string `json:"offer_id,omitempty"`
	Version string `json:"version"`
	State   State  `json:"state"`
	// Progress marks an intermediate report within a state (bytes moving);
	// a status without it is a step of its own.
	Progress   bool   `json:"progress,omitempty"`
	BytesDone  int64  `json:"bytes_done,omitempty"`
	BytesTotal int64  `json:"bytes_total,omitempty"`
	Detail     string `json:"detail,omitempty"`
	// Output is the tail of the install command's output.
	Output string `json:"output,omitempty"`
}

// MaxDetail and MaxOutput bound a status's free-text fields.
const (
	MaxDetail = 1024
	MaxOutput = 8 << 10
)

// Validate implements the check every decoder runs.
func (m Status) Validate() error {
	var errs []error
	switch m.State {
	case StateDownloading, StateVerifying, StateInstalling, StateInstalled, StateFailed:
	default:
		errs = append(errs, fmt.Errorf("state: unknown %q", truncate(string(m.State), 32)))
	}
	errs = append(errs, validateVersion("version", m.Version))
	if len(m.OfferID) > 64 {
		errs = append(errs, errors.New("offer_id: longer than 64 bytes"))
	}
	if m.BytesDone < 0 || m.BytesTotal < 0 {
		errs = append(errs, errors.New("bytes_done, bytes_total: negative"))
	}
	if len(m.Detail) > MaxDetail {
		errs = append(errs, fmt.Errorf("detail: longer than %d bytes", MaxDetail))
	}
	if len(m.Output) > MaxOutput {
		errs = append(errs, fmt.Errorf("output: longer than %d bytes", MaxOutput))
	}
	return errors.Join(errs...)
}

// Message is the set of wire types; each validates itself.
type Message interface {
	HWReport | VersionInstalled | Heartbeat | Offer | Status | EnrollRequest | EnrollResponse
	Validate() error
}

// DecodeError says why a message was refused. Reason is one of a few
// fixed words, fit for a metric label.
type DecodeError struct {
	Reason string // "too_large", "bad_json" or "invalid"
	Err    error
}

func (e *DecodeError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// Decode parses and validates one message of type T.
func Decode[T Message](data []byte) (T, error) {
	var m T
	if len(data) > MaxMessageSize {
		return m, &DecodeError{"too_large", fmt.Errorf("%d bytes, limit %d", len(data), MaxMessageSize)}
	}
	if err := json.Unmarshal(data, &m); err != nil {
		var zero T
		return zero, &DecodeError{"bad_json", err}
	}
	if err := m.Validate(); err != nil {
		var zero T
		return zero, &DecodeError{"invalid", err}
	}
	return m, nil
}

// DropReason is the metric label for err: the DecodeError's reason, or
// "invalid" for any other error.
func DropReason(err error) string {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return "invalid"
}
