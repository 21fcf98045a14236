package web

// GET /api/v1/devices and /api/v1/devices/{id}, served from the hub's
// copy of the devices: no request reads the bucket, whatever the size of
// the fleet.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/store"
	"github.com/thinfleet/thinfleet/web/pages"
	"github.com/thinfleet/thinfleet/wire"
)

// The page sizes of GET /api/v1/devices.
const (
	// DefaultDeviceLimit is the page size when a cursor comes without a
	// limit.
	DefaultDeviceLimit = 100
	// MaxDeviceLimit is the largest page; a larger limit is refused.
	MaxDeviceLimit = 1000
)

// deviceQuery is what a GET /api/v1/devices asks for. Devices are always
// in id order: that is what makes a cursor stable.
type deviceQuery struct {
	paged    bool   // a limit or a cursor was given: answer one page
	limit    int    // the page size, when paged
	after    string // the page starts after this id ("" from the first)
	needle   string // part of an id or hostname, lower case
	alive    string // "", "true" or "false"
	version  string // exactly this version; "none" for no version yet
	outdated string // "", "true" or "false"
}

// paramError is a query parameter with a value the API refuses.
type paramError struct{ param, want string }

func (e *paramError) Error() string { return e.param + ": " + e.want }

// parseDeviceQuery reads the query string of GET /api/v1/devices. Every
// value it does not understand is an error naming its parameter; names
// it does not know are ignored.
func parseDeviceQuery(v url.Values) (deviceQuery, *paramError) {
	q := deviceQuery{
		needle:  strings.ToLower(strings.TrimSpace(v.Get("q"))),
		version: strings.TrimSpace(v.Get("version")),
	}
	if v.Has("limit") {
		n, err := strconv.Atoi(v.Get("limit"))
		if err != nil || n < 1 || n > MaxDeviceLimit {
			return q, &paramError{"limit", "want a number from 1 to " + strconv.Itoa(MaxDeviceLimit)}
		}
		q.paged, q.limit = true, n
	}
	if v.Has("cursor") {
		after, err := decodeCursor(v.Get("cursor"))
		if err != nil {
			return q, &paramError{"cursor", "want the next_cursor of a page this server gave"}
		}
		q.after = after
		if !q.paged {
			q.paged, q.limit = true, DefaultDeviceLimit
		}
	}
	for _, b := range []struct {
		name string
		to   *string
	}{{"alive", &q.alive}, {"outdated", &q.outdated}} {
		if !v.Has(b.name) {
			continue
		}
		switch s := v.Get(b.name); s {
		case "true", "false":
			*b.to = s
		default:
			return q, &paramError{b.name, "want true or false"}
		}
	}
	return q, nil
}

// A cursor is the last id of the page before, opaque to clients: the
// next page starts after it, so a device that exists throughout a walk is
// listed exactly once, whatever is added or removed meanwhile.
func encodeCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func decodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", err
	}
	return string(b), wire.ValidateID(string(b))
}

// filtered reports whether the query filters at all.
func (q deviceQuery) filtered() bool {
	return q.needle != "" || q.alive != "" || q.version != "" || q.outdated != ""
}

// match reports whether q selects d; vs is needed only for outdated.
func (q deviceQuery) match(d *fleet.Device, vs *versions) bool {
	switch {
	case q.needle != "" && !containsFold(d.ID, q.needle) && !containsFold(d.Hostname, q.needle):
	case q.alive != "" && d.Alive != (q.alive == "true"):
	case q.version == "none" && d.Version != "":
	case q.version != "" && q.version != "none" && d.Version != q.version:
	case q.outdated != "" && (vs.mark(d.Version) == pages.Outdated) != (q.outdated == "true"):
	default:
		return true
	}
	return false
}

// containsFold reports whether s contains lower, which is in lower case,
// in any case. It allocates only for strings that are not lower case
// already.
func containsFold(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' || c >= 0x80 {
			return strings.Contains(strings.ToLower(s), lower)
		}
	}
	return strings.Contains(s, lower)
}

// DevicePage is one page of GET /api/v1/devices?limit=N.
type DevicePage struct {
	Devices []DeviceView `json:"devices"`
	// Total is how many devices match the query, on all pages.
	Total int `json:"total"`
	// NextCursor asks for the page after this one (?cursor=…); it is
	// empty on the last page.
	NextCursor string `json:"next_cursor"`
}

func (s *Server) handleDevices() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, perr := parseDeviceQuery(r.URL.Query())
		if perr != nil {
			writeParamError(w, perr)
			return
		}
		devices, err := s.hub.Devices(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		groups, err := s.hub.Groups(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		var vs *versions
		if q.outdated != "" {
			c, err := s.opts.Store.Catalog(r.Context())
			if err != nil {
				s.internalError(w, err)
				return
			}
			vs = newVersions(c.Target)
		}
		if !q.paged {
			streamDevices(w, devices, groups, q, vs)
			return
		}
		writeJSON(w, http.StatusOK, devicePage(devices, groups, q, vs))
	})
}

// devicePage cuts the page q asks for out of devices, sorted by id, and
// shows each with its groups.
func devicePage(devices []fleet.Device, groups []fleet.Group, q deviceQuery, vs *versions) DevicePage {
	p := DevicePage{Devices: []DeviceView{}}
	from := 0
	if q.after != "" {
		from, _ = slices.BinarySearchFunc(devices, q.after, func(d fleet.Device, id string) int { return strings.Compare(d.ID, id) })
		if from < len(devices) && devices[from].ID == q.after {
			from++
		}
	}
	if !q.filtered() {
		p.Total = len(devices)
		end := min(from+q.limit, len(devices))
		for _, d := range devices[from:end] {
			p.Devices = append(p.Devices, deviceView(d, groups))
		}
		if end < len(devices) {
			p.NextCursor = encodeCursor(devices[end-1].ID)
		}
		return p
	}
	for i := range devices {
		d := &devices[i]
		if !q.match(d, vs) {
			continue
		}
		p.Total++
		switch {
		case i < from:
		case len(p.Devices) < q.limit:
			p.Devices = append(p.Devices, deviceView(*d, groups))
		case p.NextCursor == "":
			p.NextCursor = encodeCursor(p.Devices[len(p.Devices)-1].ID)
		}
	}
	return p
}

// streamDevices writes the devices q selects as one JSON array, the
// shape (and bytes) writeJSON gives a slice, encoding one device at a
// time into the response: 10,000 devices cost the memory of one, not a
// 14 MB answer built in full first.
func streamDevices(w http.ResponseWriter, devices []fleet.Device, groups []fleet.Group, q deviceQuery, vs *versions) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("  ", "  ")
	sep := "[\n  "
	for i := range devices {
		d := &devices[i]
		if !q.match(d, vs) {
			continue
		}
		buf.Reset()
		if err := enc.Encode(deviceView(*d, groups)); err != nil {
			return // cannot happen: a Device always encodes
		}
		_, _ = bw.WriteString(sep)
		if _, err := bw.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))); err != nil {
			return // the client went away
		}
		sep = ",\n  "
	}
	if sep == "[\n  " {
		_, _ = bw.WriteString("[]\n")
	} else {
		_, _ = bw.WriteString("\n]\n")
	}
	_ = bw.Flush()
}

func (s *Server) handleDevice() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := s.hub.Device(r.Context(), r.PathValue("id"))
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no device with that id")
			return
		}
		if err != nil {
			s.internalError(w, err)
			return
		}
		s.writeDevice(w, r, d)
	})
}

// Device returns one device from the hub's copy, or store.ErrNotFound;
// it reads the store until the copy is loaded.
func (h *hub) Device(ctx context.Context, id string) (fleet.Device, error) {
	h.ensure()
	if !h.wait(ctx) {
		if err := ctx.Err(); err != nil {
			return fleet.Device{}, err
		}
		return h.store.Device(ctx, id)
	}
	h.mu.Lock()
	d, ok := h.devices[id]
	h.mu.Unlock()
	if !ok {
		return fleet.Device{}, store.ErrNotFound
	}
	return d, nil
}
