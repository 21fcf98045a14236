package web

// The rollouts API: /api/v1/rollouts and the actions on one rollout,
// served from the hub's copy of the rollouts.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/wire"
)

// rolloutJSON is a rollout as the API shows it: fleet.Rollout, its
// members left out unless asked for (?members=1), with its counts over
// all its waves.
type rolloutJSON struct {
	fleet.Rollout
	Counts fleet.WaveCounts `json:"counts"`
}

func newRolloutJSON(ro fleet.Rollout, members bool) rolloutJSON {
	if !members {
		ro.Members = nil
	}
	return rolloutJSON{Rollout: ro, Counts: ro.Counts()}
}

func (s *Server) handleRollouts() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs, err := s.hub.Rollouts(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		out := make([]rolloutJSON, len(rs))
		for i, ro := range rs {
			out[i] = newRolloutJSON(ro, false)
		}
		writeJSON(w, http.StatusOK, map[string]any{"rollouts": out})
	})
}

func (s *Server) handleRollout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		members := false
		if q := r.URL.Query(); q.Has("members") {
			switch q.Get("members") {
			case "1", "true":
				members = true
			case "0", "false":
			default:
				writeParamError(w, &paramError{"members", "want 1 or 0"})
				return
			}
		}
		ro, err := s.hub.Rollout(r.Context(), r.PathValue("id"))
		if err != nil {
			s.rolloutError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, newRolloutJSON(ro, members))
	})
}

// rolloutError answers an error of the rollout operations in JSON, with
// its status (rolloutStatus).
func (s *Server) rolloutError(w http.ResponseWriter, err error) {
	status := rolloutStatus(err)
	switch status {
	case http.StatusNotFound:
		writeError(w, status, "no rollout with that id")
	case http.StatusServiceUnavailable:
		s.log.Error("rollout operation failed", "err", err)
		writeError(w, status, err.Error())
	default:
		writeError(w, status, err.Error())
	}
}

// specBody is the body of POST /api/v1/rollouts: a fleet.RolloutSpec
// whose selector may also be a string ("site=berlin,ring=canary").
type specBody struct {
	fleet.RolloutSpec
	Selector json.RawMessage `json:"selector"`
}

// decodeSpec reads a rollout spec. Unknown fields are refused: a typo in
// a threshold's name must not roll a release out without it.
func decodeSpec(r io.Reader) (fleet.RolloutSpec, error) {
	var b specBody
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return fleet.RolloutSpec{}, badInput("rollout spec: %w", err)
	}
	spec := b.RolloutSpec
	raw := bytes.TrimSpace(b.Selector)
	switch {
	case len(raw) == 0 || string(raw) == "null":
	case raw[0] == '"':
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return spec, badInput("selector: %w", err)
		}
		sel, err := fleet.ParseSelector(text)
		if err != nil {
			return spec, inputError{err}
		}
		spec.Selector = sel
	default:
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec.Selector); err != nil {
			return spec, badInput(`selector: want "k=v,k2=v2" or {"match":{"k":"v"}}: %w`, err)
		}
	}
	for _, id := range spec.Selector.IDs {
		if err := wire.ValidateID(id); err != nil {
			return spec, badInput("selector ids: %w", err)
		}
	}
	return spec, nil
}

func (s *Server) handleCreateRollout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spec, err := decodeSpec(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			s.rolloutError(w, err)
			return
		}
		ro, err := s.createRollout(r, spec)
		if err != nil {
			s.rolloutError(w, err)
			return
		}
		w.Header().Set("Location", "/api/v1/rollouts/"+ro.ID)
		writeJSON(w, http.StatusCreated, newRolloutJSON(ro, false))
	})
}

// actionBody is the optional body of an action on a rollout.
type actionBody struct {
	Reason  string `json:"reason"`
	Version string `json:"version"`
}

// handleRolloutAction is POST /api/v1/rollouts/{id}/<action>.
func (s *Server) handleRolloutAction(action string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b actionBody
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<10))
		if err == nil && len(bytes.TrimSpace(body)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			err = dec.Decode(&b)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("body: want {\"reason\":\"…\"} or {\"version\":\"…\"}: %v", err))
			return
		}
		arg := b.Reason
		if action == actionRelease {
			arg = b.Version
		}
		ro, err := s.rolloutAction(r, r.PathValue("id"), action, arg)
		if err != nil {
			s.rolloutError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, newRolloutJSON(ro, false))
	})
}

func (s *Server) handleDeleteRollout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := s.deleteRollout(r, id); err != nil {
			s.rolloutError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
	})
}
