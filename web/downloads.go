package web

import (
	"crypto/subtle"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/thinfleet/thinfleet/downloadlink"
)

// handleDownload serves a release zip from the updates folder, with Range
// requests (agents resume interrupted downloads) and an ETag of its
// sha256. Only files the catalog accepted are served; anything else in
// the folder stays private.
//
// A download needs one of: a signed link that has not expired (what the
// offers carry, package downloadlink), the admin bearer token, or a
// dashboard session. Anything else is 403, before the catalog is read, so
// that nobody learns which files exist without being allowed to fetch them.
func (s *Server) handleDownload() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if err := s.mayDownload(r, name); err != nil {
			s.log.Info("download refused", "file", name, "remote", r.RemoteAddr, "reason", err)
			writeError(w, http.StatusForbidden, "download refused: "+err.Error())
			return
		}
		rel, ok, err := s.hub.release(r.Context(), name)
		if err != nil {
			s.internalError(w, err)
			return
		}
		if !ok || rel.SHA256 == "" {
			writeError(w, http.StatusNotFound, "no such update")
			return
		}
		sum := rel.SHA256
		root, err := os.OpenRoot(s.opts.UpdatesDir)
		if err != nil {
			s.internalError(w, err)
			return
		}
		defer root.Close()
		f, err := root.Open(name)
		if err != nil {
			writeError(w, http.StatusNotFound, "no such update")
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			writeError(w, http.StatusNotFound, "no such update")
			return
		}
		w.Header().Set("ETag", strconv.Quote(sum))
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", "attachment; filename="+strconv.Quote(name))
		http.ServeContent(w, r, name, st.ModTime(), f)
	})
}

// mayDownload returns why r may not download file, or nil. The admin token
// and a session are checked first: an operator's own link need not be
// signed.
func (s *Server) mayDownload(r *http.Request, file string) error {
	want := []byte("Bearer " + s.opts.AdminToken)
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1 || s.signedIn(r) {
		return nil
	}
	return downloadlink.Check(s.opts.LinkKey, file, r.URL.Query(), time.Now())
}
