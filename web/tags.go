package web

// An operator's tags and pins on one device: POST
// /api/v1/devices/{id}/tags, PUT and DELETE /api/v1/devices/{id}/pin, and
// the functions behind them, which the bulk action and the pages call
// too. Each writes the device with compare-and-set, never creates a
// record that is not there, and records itself in the audit log.

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
)

// DeviceView is a device as the API shows it: its record, the names of
// the groups whose selector matches it, and the release channel it
// follows (fleet.DeviceChannel).
type DeviceView struct {
	fleet.Device
	Groups  []string `json:"groups"`
	Channel string   `json:"channel"`
}

// deviceView is d with its groups and channel among groups.
func deviceView(d fleet.Device, groups []fleet.Group) DeviceView {
	return DeviceView{Device: d, Groups: fleet.GroupNames(d, groups), Channel: fleet.DeviceChannel(d, groups)}
}

// writeDevice answers with d as DeviceView, its groups from the hub.
func (s *Server) writeDevice(w http.ResponseWriter, r *http.Request, d fleet.Device) {
	groups, err := s.hub.Groups(r.Context())
	if err != nil {
		s.internalError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, deviceView(d, groups))
}

// TagRequest is the body of POST /api/v1/devices/{id}/tags.
type TagRequest struct {
	Set    fleet.Labels `json:"set,omitempty"`
	Remove []string     `json:"remove,omitempty"`
}

// maxReason bounds the reason of a pin.
const maxReason = 256

func (s *Server) handleTags() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req TagRequest
		if !readJSON(w, r, &req) {
			return
		}
		d, err := s.tagDevice(r, r.PathValue("id"), req.Set, req.Remove, false)
		if err != nil {
			s.actionError(w, err)
			return
		}
		s.writeDevice(w, r, d)
	})
}

// checkTags checks an operator's change of tags: valid labels to set,
// valid keys to remove, none in both, something to do.
func checkTags(set fleet.Labels, remove []string) error {
	if len(set) == 0 && len(remove) == 0 {
		return badRequest(`nothing to do: give tags to set ({"set":{"k":"v"}}) or keys to remove ({"remove":["k"]})`)
	}
	if err := set.Validate(); err != nil {
		return badRequest("tags: " + err.Error())
	}
	if len(remove) > fleet.MaxLabels*4 {
		return badRequest(fmt.Sprintf("remove: more than %d keys", fleet.MaxLabels*4))
	}
	for _, k := range remove {
		if err := fleet.ValidateLabel(k, ""); err != nil {
			return badRequest("remove: " + err.Error())
		}
		if _, ok := set[k]; ok {
			return badRequest(fmt.Sprintf("tag %s both set and removed", k))
		}
	}
	return nil
}

// tagDevice sets the tags set on device id and removes those named in
// remove, and records it in the audit log (device.tag, or device.untag
// when it only removes; the detail begins with "bulk" when bulk). A
// device would have more than fleet.MaxLabels tags: 400.
func (s *Server) tagDevice(r *http.Request, id string, set fleet.Labels, remove []string, bulk bool) (fleet.Device, error) {
	if err := checkTags(set, remove); err != nil {
		return fleet.Device{}, err
	}
	d, err := s.opts.Store.UpdateExistingDevice(r.Context(), id, func(d *fleet.Device) error {
		tags := maps.Clone(d.Tags)
		if tags == nil {
			tags = fleet.Labels{}
		}
		maps.Copy(tags, set)
		for _, k := range remove {
			delete(tags, k)
		}
		if len(tags) > fleet.MaxLabels {
			return badRequest(fmt.Sprintf("device %s would have %d tags, at most %d", id, len(tags), fleet.MaxLabels))
		}
		if len(tags) == 0 {
			tags = nil
		}
		d.Tags = tags
		return nil
	})
	if err != nil {
		return fleet.Device{}, deviceErr(err)
	}
	action, detail := "device.tag", tagDetail(set, remove)
	if len(set) == 0 {
		action = "device.untag"
	}
	s.audit(r, action, id, bulkDetail(bulk, detail))
	s.log.Info("tags changed by an operator", "device", id, "detail", detail, "remote", r.RemoteAddr)
	return d, nil
}

// tagDetail says what a change of tags did, in one line.
func tagDetail(set fleet.Labels, remove []string) string {
	var parts []string
	if len(set) > 0 {
		parts = append(parts, "set "+set.String())
	}
	if len(remove) > 0 {
		parts = append(parts, "removed "+strings.Join(slices.Sorted(slices.Values(remove)), ","))
	}
	return strings.Join(parts, "; ")
}

// bulkDetail is an audit entry's detail, "bulk: …" for a bulk action.
func bulkDetail(bulk bool, detail string) string {
	switch {
	case !bulk:
		return detail
	case detail == "":
		return "bulk"
	}
	return "bulk: " + detail
}

func (s *Server) handlePin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req PinRequest
		if !readJSON(w, r, &req) {
			return
		}
		pin, err := s.newPin(r, req)
		if err != nil {
			s.actionError(w, err)
			return
		}
		d, err := s.pinDevice(r, r.PathValue("id"), pin, false)
		if err != nil {
			s.actionError(w, err)
			return
		}
		s.writeDevice(w, r, d)
	})
}

func (s *Server) handleUnpin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := s.unpinDevice(r, r.PathValue("id"), false)
		if err != nil {
			s.actionError(w, err)
			return
		}
		s.writeDevice(w, r, d)
	})
}

// newPin checks req and makes the pin it asks for: the version must be a
// release in the catalog (400 naming the versions there otherwise), and
// the pin holds it as the catalog spells it.
func (s *Server) newPin(r *http.Request, req PinRequest) (*fleet.Pin, error) {
	version := strings.TrimSpace(req.Version)
	if version == "" {
		return nil, badRequest(`pin: give the version to pin to ({"version":"1.2.0"})`)
	}
	if len(req.Reason) > maxReason {
		return nil, badRequest(fmt.Sprintf("pin reason: longer than %d bytes", maxReason))
	}
	c, err := s.opts.Store.Catalog(r.Context())
	if err != nil {
		return nil, err
	}
	rel, ok := c.Release(version)
	if !ok {
		return nil, badRequest(notInCatalog(version, c))
	}
	return &fleet.Pin{Version: rel.Version, Reason: strings.TrimSpace(req.Reason), By: who(r), Time: time.Now().UTC()}, nil
}

// notInCatalog says that version is no release, and which are.
func notInCatalog(version string, c fleet.Catalog) string {
	if len(c.Releases) == 0 {
		return fmt.Sprintf("version %s is not in the catalog, which is empty: publish it first", quoteName(version))
	}
	var have []string
	for i, rel := range c.Releases {
		if i == 20 {
			have = append(have, fmt.Sprintf("and %d more", len(c.Releases)-i))
			break
		}
		have = append(have, rel.Version)
	}
	return fmt.Sprintf("version %s is not in the catalog; it has %s", quoteName(version), strings.Join(have, ", "))
}

// pinDevice pins device id to pin (made by newPin), and records it in the
// audit log (device.pin).
func (s *Server) pinDevice(r *http.Request, id string, pin *fleet.Pin, bulk bool) (fleet.Device, error) {
	d, err := s.opts.Store.UpdateExistingDevice(r.Context(), id, func(d *fleet.Device) error {
		p := *pin
		d.Pin = &p
		return nil
	})
	if err != nil {
		return fleet.Device{}, deviceErr(err)
	}
	detail := pin.Version
	if pin.Reason != "" {
		detail += ": " + pin.Reason
	}
	s.audit(r, "device.pin", id, bulkDetail(bulk, detail))
	s.log.Info("device pinned by an operator", "device", id, "version", pin.Version, "remote", r.RemoteAddr)
	return d, nil
}

// unpinDevice removes device id's pin, and records it in the audit log
// (device.unpin), also when there was none.
func (s *Server) unpinDevice(r *http.Request, id string, bulk bool) (fleet.Device, error) {
	var was *fleet.Pin
	d, err := s.opts.Store.UpdateExistingDevice(r.Context(), id, func(d *fleet.Device) error {
		if was = d.Pin; was == nil {
			return store.ErrUnchanged
		}
		d.Pin = nil
		return nil
	})
	if err != nil {
		return fleet.Device{}, deviceErr(err)
	}
	detail := "was not pinned"
	if was != nil {
		detail = "was pinned to " + was.Version
	}
	s.audit(r, "device.unpin", id, bulkDetail(bulk, detail))
	s.log.Info("device unpinned by an operator", "device", id, "detail", detail, "remote", r.RemoteAddr)
	return d, nil
}
