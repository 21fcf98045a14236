package web

// POST /api/v1/devices/bulk: one action on many devices, chosen by id or
// by a label selector.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/wire"
)

// maxBulk bounds the devices of one bulk action, and the ids of a
// selector.
const maxBulk = 10000

// The bulk actions.
const (
	BulkOfferAgain  = "offer-again"
	BulkRetryFailed = "retry-failed"
	BulkApprove     = "approve"
	BulkRevoke      = "revoke"
	BulkTag         = "tag"
	BulkUntag       = "untag"
	BulkPin         = "pin"
	BulkUnpin       = "unpin"
	BulkDelete      = "delete"
)

// BulkActions are the actions POST /api/v1/devices/bulk takes.
var BulkActions = []string{BulkOfferAgain, BulkRetryFailed, BulkApprove, BulkRevoke, BulkTag, BulkUntag, BulkPin, BulkUnpin, BulkDelete}

// BulkRequest is the body of POST /api/v1/devices/bulk: the devices, by
// IDs or by Selector ("k=v,k2=v2"; "all" for every device), and the
// action with what it needs: Tags (tag), Keys (untag), Version and Reason
// (pin).
type BulkRequest struct {
	IDs      []string     `json:"ids,omitempty"`
	Selector string       `json:"selector,omitempty"`
	Action   string       `json:"action"`
	Tags     fleet.Labels `json:"tags,omitempty"`
	Keys     []string     `json:"keys,omitempty"`
	Version  string       `json:"version,omitempty"`
	Reason   string       `json:"reason,omitempty"`
}

// BulkResult is what a bulk action did to one device: OK, or the Error
// that stopped it. Skipped marks a device the action does not apply to
// (retry-failed on one whose latest install did not fail, offer-again on
// one that runs the target): not done, and not a failure either.
type BulkResult struct {
	ID      string `json:"id"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// BulkResponse is the answer of POST /api/v1/devices/bulk: a result per
// device, in the order of the ids asked for (by id for a selector).
type BulkResponse struct {
	Action  string       `json:"action"`
	Results []BulkResult `json:"results"`
}

func (s *Server) handleBulkAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req BulkRequest
		if !readJSON(w, r, &req) {
			return
		}
		res, err := s.bulk(r, req)
		if err != nil {
			s.actionError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// bulkWorkers is how many devices a bulk action works on at once: each
// step waits for the store, so a few at a time finish 10,000 devices
// sooner without crowding the store out for anything else.
const bulkWorkers = 8

// bulk does req's action on each device it chooses, and records each in
// the audit log (device.<action>, detail "bulk…"). A request that is
// wrong as a whole (an unknown action, no devices, a pin to a version
// not in the catalog) is refused before anything is done (400).
func (s *Server) bulk(r *http.Request, req BulkRequest) (BulkResponse, error) {
	do, err := s.bulkAction(r, req)
	if err != nil {
		return BulkResponse{}, err
	}
	ids, err := s.bulkTargets(r.Context(), req)
	if err != nil {
		return BulkResponse{}, err
	}
	results := make([]BulkResult, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(bulkWorkers, len(ids)) {
		wg.Go(func() {
			for i := range next {
				results[i] = BulkResult{ID: ids[i], OK: true}
				if err := do(ids[i]); err != nil {
					var skip *skipped
					results[i] = BulkResult{ID: ids[i], Skipped: errors.As(err, &skip), Error: err.Error()}
				}
			}
		})
	}
	for i := range ids {
		if r.Context().Err() != nil {
			results[i] = BulkResult{ID: ids[i], Error: "not done: the request ended"}
			continue
		}
		next <- i
	}
	close(next)
	wg.Wait()
	s.log.Info("bulk action by an operator", "action", req.Action, "devices", len(ids), "remote", r.RemoteAddr)
	return BulkResponse{Action: req.Action, Results: results}, nil
}

// skipped is a device a bulk action does not apply to.
type skipped struct{ why string }

func (e *skipped) Error() string { return e.why }

// bulkAction checks what req asks to do, and returns the function that
// does it to one device.
func (s *Server) bulkAction(r *http.Request, req BulkRequest) (func(id string) error, error) {
	switch req.Action {
	case BulkOfferAgain, BulkRetryFailed:
		retry := req.Action == BulkRetryFailed
		return func(id string) error {
			if retry {
				d, err := s.hub.Device(r.Context(), id)
				if err != nil {
					return deviceErr(err)
				}
				if d.Install == nil || d.Install.State != wire.StateFailed {
					return &skipped{"its latest install did not fail"}
				}
			}
			notice, err := s.offerAgain(r, id, true)
			if err != nil {
				return deviceErr(err)
			}
			if notice != "offered" {
				if notice == "no-action" {
					return errors.New(offerNotices[notice])
				}
				return &skipped{offerNotices[notice]}
			}
			return nil
		}, nil
	case BulkApprove, BulkRevoke:
		state := fleet.EnrollApproved
		if req.Action == BulkRevoke {
			state = fleet.EnrollRevoked
		}
		return func(id string) error {
			_, err := s.setEnrollState(r, id, state, true)
			return err
		}, nil
	case BulkTag, BulkUntag:
		set, remove := req.Tags, req.Keys
		if req.Action == BulkTag && len(req.Keys) > 0 || req.Action == BulkUntag && len(req.Tags) > 0 {
			return nil, badRequest(`tag takes "tags" ({"k":"v"}), untag takes "keys" (["k"])`)
		}
		if err := checkTags(set, remove); err != nil {
			return nil, err
		}
		return func(id string) error {
			_, err := s.tagDevice(r, id, set, remove, true)
			return err
		}, nil
	case BulkPin:
		pin, err := s.newPin(r, PinRequest{Version: req.Version, Reason: req.Reason})
		if err != nil {
			return nil, err
		}
		return func(id string) error {
			_, err := s.pinDevice(r, id, pin, true)
			return err
		}, nil
	case BulkUnpin:
		return func(id string) error {
			_, err := s.unpinDevice(r, id, true)
			return err
		}, nil
	case BulkDelete:
		return func(id string) error { return s.deleteDevice(r, id, true) }, nil
	}
	return nil, badRequest(fmt.Sprintf("action %s: want one of %s", quoteName(req.Action), strings.Join(BulkActions, ", ")))
}

// bulkTargets are the devices req chooses: its ids, each once, in their
// order; or the devices its selector matches in the hub's copy, by id.
func (s *Server) bulkTargets(ctx context.Context, req BulkRequest) ([]string, error) {
	sel := strings.TrimSpace(req.Selector)
	switch {
	case len(req.IDs) > 0 && sel != "":
		return nil, badRequest(`give "ids" or a "selector", not both`)
	case len(req.IDs) > maxBulk:
		return nil, badRequest(fmt.Sprintf("ids: more than %d", maxBulk))
	case len(req.IDs) > 0:
		ids := make([]string, 0, len(req.IDs))
		seen := make(map[string]bool, len(req.IDs))
		for _, id := range req.IDs {
			if err := wire.ValidateID(id); err != nil {
				return nil, badRequest(fmt.Sprintf("ids: %s: %v", quoteName(id), err))
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		return ids, nil
	case sel == "":
		return nil, badRequest(`no devices: give "ids" (["kiosk-1"]) or a "selector" ("site=berlin", or "all")`)
	}
	selector, err := fleet.ParseSelector(sel)
	if err != nil {
		return nil, badRequest(err.Error())
	}
	devices, err := s.hub.Devices(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for i := range devices {
		if selector.Matches(devices[i]) {
			ids = append(ids, devices[i].ID)
		}
	}
	if len(ids) > maxBulk {
		return nil, badRequest(fmt.Sprintf("selector %s matches %d devices, more than %d at once: narrow it", quoteName(sel), len(ids), maxBulk))
	}
	return slices.Clip(ids), nil
}

// offerNotices say what offerAgain's notices other than "offered" mean.
var offerNotices = map[string]string{
	"no-action":  "this server cannot publish offers",
	"no-target":  "there is no target version to offer",
	"up-to-date": "the device already runs the target",
	"pinned":     "the device is pinned, and is offered the version of its pin; unpin it to offer the target",
}

// setEnrollState approves or revokes device id, and records it in the
// audit log (device.approve or device.revoke).
func (s *Server) setEnrollState(r *http.Request, id string, state fleet.EnrollState, bulk bool) (fleet.Enrollment, error) {
	en, err := s.opts.Store.SetEnrollState(r.Context(), id, state)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fleet.Enrollment{}, &actionErr{http.StatusNotFound, "no device with that id has asked to enroll"}
	case err != nil:
		return fleet.Enrollment{}, &actionErr{http.StatusConflict, err.Error()}
	}
	action := "device.approve"
	if state == fleet.EnrollRevoked {
		action = "device.revoke"
	}
	s.audit(r, action, id, bulkDetail(bulk, ""))
	s.log.Info("enrollment changed by an operator", "device", en.ID, "state", en.State, "remote", r.RemoteAddr)
	return en, nil
}

// deleteDevice forgets device id (store.DeleteDevice), and records it in
// the audit log (device.delete).
func (s *Server) deleteDevice(r *http.Request, id string, bulk bool) error {
	via := "dashboard"
	if r.Header.Get("Authorization") != "" {
		via = "API"
	}
	if err := s.opts.Store.DeleteDevice(r.Context(), id, "an operator ("+via+", "+r.RemoteAddr+")"); err != nil {
		return deviceErr(err)
	}
	s.audit(r, "device.delete", id, bulkDetail(bulk, ""))
	s.log.Info("device deleted by an operator", "device", id, "remote", r.RemoteAddr)
	return nil
}
