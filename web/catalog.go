package web

import (
	"net/http"
	"net/url"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
)

// releaseRows are the catalog's releases as the pages show them, with how
// many devices run each.
func (s *Server) releaseRows(c fleet.Catalog, counts []pages.VersionCount) []pages.ReleaseRow {
	running := map[string]int{}
	for _, vc := range counts {
		running[vc.Version] = vc.Count
	}
	rows := make([]pages.ReleaseRow, 0, len(c.Releases))
	for _, r := range c.Releases {
		rows = append(rows, pages.ReleaseRow{
			Release: r, Target: r.Version == c.Target, Devices: running[r.Version],
			URL: s.opts.PublicURL + "/downloads/" + url.PathEscape(r.File),
		})
	}
	return rows
}

func (s *Server) handleUpdatesPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		devices, err := s.hub.Devices(ctx)
		if err != nil {
			s.pageError(w, err)
			return
		}
		c, err := s.opts.Store.Catalog(ctx)
		if err != nil {
			s.pageError(w, err)
			return
		}
		counts := newVersions(c.Target).counts(devices)
		s.render(w, r, http.StatusOK, pages.Updates(pages.UpdatesView{
			Frame:    frame(r, "Available updates", "updates", liveURL("devices,catalog", "")),
			Releases: s.releaseRows(c, counts), Refused: c.Refused,
			Target: c.Target, TargetReason: c.TargetReason, Versions: counts, Scanned: c.Updated,
		}))
	})
}

func (s *Server) handleDownloadsPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.opts.Store.Catalog(r.Context())
		if err != nil {
			s.pageError(w, err)
			return
		}
		s.render(w, r, http.StatusOK, pages.Downloads(pages.DownloadsView{
			Frame:    frame(r, "Downloads", "downloads", liveURL("catalog", "")),
			Releases: s.releaseRows(c, nil),
		}))
	})
}
