package web

// What the operator's actions on devices and groups share: reading a JSON
// body, and the errors they answer with.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/thinfleet/thinfleet/store"
)

// actionErr is an operator's action refused, with the status that says
// why: 400 for what the request asked, 409 for what the state forbids.
type actionErr struct {
	status int
	msg    string
}

func (e *actionErr) Error() string { return e.msg }

func badRequest(msg string) error { return &actionErr{http.StatusBadRequest, msg} }

// statusOf is the HTTP status an action's error answers with: its own
// for an actionErr, 404 for store.ErrNotFound, 503 for the rest (the
// store did not answer).
func statusOf(err error) int {
	var ae *actionErr
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusServiceUnavailable
}

// actionError answers an action's error in JSON, with statusOf's status.
// An error of the store is logged too.
func (s *Server) actionError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	msg := err.Error()
	switch status {
	case http.StatusServiceUnavailable:
		s.log.Error("action failed", "err", err)
	case http.StatusNotFound:
		var ae *actionErr
		if !errors.As(err, &ae) {
			msg = "not found"
		}
	}
	writeError(w, status, msg)
}

// noDevice is the error of an action on a device there is no record of.
var noDevice = &actionErr{http.StatusNotFound, "no device with that id"}

// deviceErr is err, with the store's ErrNotFound said as noDevice.
func deviceErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return noDevice
	}
	return err
}

// maxBody bounds the JSON body of an action: a bulk action's 10,000 ids
// fit, with room.
const maxBody = 1 << 20

// readJSON decodes r's JSON body into v, refusing unknown fields and
// anything after the value; on failure it answers 400 and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "body: want JSON: "+strings.TrimPrefix(err.Error(), "json: "))
		return false
	}
	return true
}
