package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// state is what the agent keeps in state.json. It is the truth about the
// machine: the version reported is always the one recorded here.
type state struct {
	Version         string    `json:"version,omitempty"`
	PreviousVersion string    `json:"previous_version,omitempty"`
	InstalledAt     time.Time `json:"installed_at,omitzero"`
	// Installing is the marker of a command that has started and not yet
	// been recorded as done: found at start, the agent died mid-install.
	Installing *installing `json:"installing,omitempty"`
	// Interrupted counts the installs of one version cut short by the
	// agent stopping, so a command that kills the agent cannot loop.
	Interrupted *interrupted `json:"interrupted,omitempty"`
	// Failed are the versions that failed, not tried again without an
	// offer that asks for a retry. The newest last.
	Failed []failure `json:"failed,omitempty"`
	// Offers are the ids of the last offers taken to install, the newest
	// last: the same offer again is a replay, and refused.
	Offers []string `json:"offers,omitempty"`
}

type installing struct {
	Version   string    `json:"version"`
	OfferID   string    `json:"offer_id,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

type interrupted struct {
	Version string `json:"version"`
	Count   int    `json:"count"`
}

type failure struct {
	Version string    `json:"version"`
	Reason  string    `json:"reason"`
	Time    time.Time `json:"time"`
}

// maxFailed bounds the failures kept; the oldest go first.
const maxFailed = 50

// maxOffers bounds the offer ids kept. An offer older than
// wire.OfferLifetime is refused anyway, so these need cover only the
// offers taken within that time.
const maxOffers = 100

// taken reports whether the offer id was taken to install before.
func (s *state) taken(id string) bool { return slices.Contains(s.Offers, id) }

// recordOffer remembers that the offer id was taken to install.
func (s *state) recordOffer(id string) {
	s.Offers = append(s.Offers, id)
	if len(s.Offers) > maxOffers {
		s.Offers = slices.Clone(s.Offers[len(s.Offers)-maxOffers:])
	}
}

// failed returns the recorded failure of version, if any.
func (s *state) failed(version string) (failure, bool) {
	for _, f := range s.Failed {
		if sameVersion(f.Version, version) {
			return f, true
		}
	}
	return failure{}, false
}

// recordFailure remembers that version failed, replacing an older record
// of it.
func (s *state) recordFailure(version, reason string, now time.Time) {
	s.clearFailure(version)
	s.Failed = append(s.Failed, failure{Version: version, Reason: reason, Time: now.UTC()})
	if len(s.Failed) > maxFailed {
		s.Failed = slices.Clone(s.Failed[len(s.Failed)-maxFailed:])
	}
}

func (s *state) clearFailure(version string) {
	s.Failed = slices.DeleteFunc(s.Failed, func(f failure) bool { return sameVersion(f.Version, version) })
}

// clone returns a deep copy, so readers never share memory with the store.
func (s state) clone() state {
	if s.Installing != nil {
		m := *s.Installing
		s.Installing = &m
	}
	if s.Interrupted != nil {
		i := *s.Interrupted
		s.Interrupted = &i
	}
	s.Failed = slices.Clone(s.Failed)
	s.Offers = slices.Clone(s.Offers)
	return s
}

// sameVersion compares versions as versions (1.0 is 1.0.0), or as strings
// if either does not parse.
func sameVersion(a, b string) bool {
	if a == b {
		return true
	}
	c, err := wire.CompareVersions(a, b)
	return err == nil && c == 0
}

// store is state.json and its copy in memory. Every change is written to
// disk before it is visible in memory.
type store struct {
	path string
	mu   sync.Mutex
	st   state
}

// openStore reads the state at path; a missing file is an empty state. A
// file that does not parse (written by hand, or a disk gone bad) is moved
// aside and the agent starts as on a new machine: it then reports no
// version rather than a wrong one, and the server offers its target.
func openStore(path string, log *slog.Logger) (*store, error) {
	s := &store{path: path}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(data, &s.st); err != nil {
		aside := fmt.Sprintf("%s.broken-%d", path, time.Now().Unix())
		log.Error("state file unreadable, starting afresh", "path", path, "err", err, "moved_to", aside)
		if err := os.Rename(path, aside); err != nil {
			return nil, fmt.Errorf("move unreadable state aside: %w", err)
		}
		s.st = state{}
	}
	return s, nil
}

// get returns a copy of the current state.
func (s *store) get() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.clone()
}

// update applies change to a copy of the state and writes it atomically;
// only once it is on disk does the copy become the state.
func (s *store) update(change func(*state)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.st.clone()
	change(&next)
	data, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := writeFileAtomic(s.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	s.st = next
	return nil
}
