package simfleet

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// Behaviour is what the agents report and how their installs go. Every
// choice is made by the agent's index, never at random, so that a test
// knows beforehand which agent does what (Fails, Agent.Labels,
// Agent.Hardware).
type Behaviour struct {
	// Labels are every agent's labels (wire.ParseLabels's rules).
	Labels map[string]string
	// CanaryEvery, when above 0, labels every CanaryEvery-th agent
	// (index 0, N, 2N, ...) ring=canary and the others ring=main.
	CanaryEvery int
	// Platforms are the "os/arch" the agents report, agent i the
	// (i mod len)-th; linux/amd64 when empty.
	Platforms []string
	// InstallTime is how long each install takes once its download is
	// checked, in state installing: long enough to see how many
	// installs run at once.
	InstallTime time.Duration
	// Failures make installs fail; the first that matches decides.
	Failures []Failure
}

// Failure makes the installs of one version fail on a share of the
// agents.
type Failure struct {
	// Version is the version whose installs fail; "" is every version.
	Version string
	// Percent of the agents fail, spread over the indexes by a fixed
	// permutation: agent i fails when 37·i mod 100 < Percent. Of every
	// 100 agents in a row exactly Percent fail, and so do Percent of
	// every 10 whose indexes are 10 apart (0, 10, 20, ...: the canaries
	// of Behaviour.CanaryEvery 10); 30 fails agents 0, 3, 6, 11, 14,
	// 17, 19, ...
	Percent int
	// Once makes only each agent's first try fail: a transient failure
	// that a retry gets past.
	Once bool
}

// Fails reports whether agent index's try (from 1) of version fails.
func (b Behaviour) Fails(version string, index, try int) bool {
	for _, f := range b.Failures {
		if f.Version != "" && !sameVersion(f.Version, version) {
			continue
		}
		return f.Chooses(index) && (!f.Once || try == 1)
	}
	return false
}

// Chooses reports whether agent index is one of the failing share.
func (f Failure) Chooses(index int) bool {
	return index >= 0 && index%100*37%100 < min(max(f.Percent, 0), 100)
}

// String gives f in ParseFailure's form.
func (f Failure) String() string {
	s := fmt.Sprintf("%s:%d", f.Version, f.Percent)
	if f.Once {
		s += ":once"
	}
	return s
}

// ParseFailure reads a failure given as VERSION:PERCENT or
// VERSION:PERCENT:once ("2.0:30", "1.1:100:once"); VERSION may be "*"
// for every version.
func ParseFailure(s string) (Failure, error) {
	const form = "want VERSION:PERCENT or VERSION:PERCENT:once"
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Failure{}, fmt.Errorf("failure %q: %s", s, form)
	}
	f := Failure{Version: strings.TrimSpace(parts[0])}
	if f.Version == "*" {
		f.Version = ""
	} else if _, err := wire.ParseVersion(f.Version); err != nil {
		return Failure{}, fmt.Errorf("failure %q: %w", s, err)
	}
	p, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(parts[1], "%")))
	if err != nil || p < 0 || p > 100 {
		return Failure{}, fmt.Errorf("failure %q: percent %q: want 0 to 100", s, parts[1])
	}
	f.Percent = p
	if len(parts) == 3 {
		if strings.TrimSpace(parts[2]) != "once" {
			return Failure{}, fmt.Errorf("failure %q: %s", s, form)
		}
		f.Once = true
	}
	return f, nil
}

// ParsePlatforms reads a comma-separated list of "os/arch"
// ("linux/amd64,linux/arm64").
func ParsePlatforms(s string) ([]string, error) {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		os, arch, ok := strings.Cut(p, "/")
		if !ok || os == "" || arch == "" || fleet.Platform(os, arch) == "" {
			return nil, fmt.Errorf("platform %q: want os/arch, such as linux/arm64", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// PlatformOf is the os and arch agent i reports.
func (b Behaviour) PlatformOf(i int) (os, arch string) {
	if len(b.Platforms) == 0 {
		return "linux", "amd64"
	}
	os, arch, _ = strings.Cut(b.Platforms[i%len(b.Platforms)], "/")
	return os, arch
}

// LabelsOf are the labels agent i reports.
func (b Behaviour) LabelsOf(i int) map[string]string {
	labels := map[string]string{}
	for k, v := range b.Labels {
		labels[k] = v
	}
	if b.CanaryEvery > 0 {
		labels["ring"] = "main"
		if i%b.CanaryEvery == 0 {
			labels["ring"] = "canary"
		}
	}
	if len(labels) == 0 {
		return nil
	}
	return labels
}
