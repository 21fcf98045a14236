package web

import (
	"net/http"
	"os"
	"strconv"
)

// handleDownload serves a release zip from the updates folder, with Range
// requests (agents resume interrupted downloads) and an ETag of its
// sha256. Only files the catalog accepted are served; anything else in
// the folder stays private.
func (s *Server) handleDownload() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		c, err := s.opts.Store.Catalog(r.Context())
		if err != nil {
			s.internalError(w, err)
			return
		}
		var sum string
		for _, rel := range c.Releases {
			if rel.File == name {
				sum = rel.SHA256
			}
		}
		if sum == "" {
			http.Error(w, "no such update", http.StatusNotFound)
			return
		}
		root, err := os.OpenRoot(s.opts.UpdatesDir)
		if err != nil {
			s.internalError(w, err)
			return
		}
		defer root.Close()
		f, err := root.Open(name)
		if err != nil {
			http.Error(w, "no such update", http.StatusNotFound)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			http.Error(w, "no such update", http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", strconv.Quote(sum))
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", "attachment; filename="+strconv.Quote(name))
		http.ServeContent(w, r, name, st.ModTime(), f)
	})
}
