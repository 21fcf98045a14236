package web

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/thinfleet/thinfleet/downloadlink"

	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/web/pages"
)

// releaseRows are the catalog's releases as the pages show them, with how
// many devices run each (1.0 and 1.0.0 are one version).
func (s *Server) releaseRows(c fleet.Catalog, vs *versions, counts []pages.VersionCount) []pages.ReleaseRow {
	rows := make([]pages.ReleaseRow, 0, len(c.Releases))
	for _, r := range c.Releases {
		running := 0
		for _, vc := range counts {
			if vc.Version != "" && vs.compare(vc.Version, r.Version) == 0 {
				running += vc.Count
			}
		}
		rows = append(rows, pages.ReleaseRow{
			Release: r, Target: r.Version == c.Target, Devices: running,
			URL: s.downloadURL(r.File, time.Now()),
		})
	}
	return rows
}

func (s *Server) handleUpdatesPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		since, devices, c, err := s.snapshot(ctx)
		if err != nil {
			s.pageError(w, err)
			return
		}
		vs := newVersions(c.Target)
		counts := vs.counts(devices)
		s.render(w, r, http.StatusOK, pages.Updates(pages.UpdatesView{
			Frame:    frame(r, "Available updates", "updates", liveURL(since, "devices,catalog", "")),
			Releases: s.releaseRows(c, vs, counts), Refused: c.Refused,
			Target: c.Target, TargetReason: c.TargetReason, Versions: counts, Scanned: c.Updated,
		}))
	})
}

func (s *Server) handleDownloadsPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		since := s.hub.Begin(r.Context())
		c, err := s.opts.Store.Catalog(r.Context())
		if err != nil {
			s.pageError(w, err)
			return
		}
		s.render(w, r, http.StatusOK, pages.Downloads(pages.DownloadsView{
			Frame:    frame(r, "Downloads", "downloads", liveURL(since, "catalog", "")),
			Releases: s.releaseRows(c, nil, nil),
		}))
	})
}

// downloadURL is where file is downloaded from: a link signed until the
// offer lifetime from now when the server has a link key, else plain.
func (s *Server) downloadURL(file string, now time.Time) string {
	if len(s.opts.LinkKey) >= downloadlink.MinKeyLength {
		return s.opts.PublicURL + downloadlink.Path(s.opts.LinkKey, file, now.Add(downloadlink.Lifetime))
	}
	return s.opts.PublicURL + "/downloads/" + url.PathEscape(file)
}

func (h *hub) setCatalog(c *fleet.Catalog) {
	h.mu.Lock()
	h.catalog = c
	h.mu.Unlock()
}

// release returns the release of the catalog that has file, from the
// hub's copy of the catalog. A file the copy does not have is looked up
// in the store: the copy follows the bucket within moments, and a
// release just accepted must not be refused to the first agent offered
// it in that moment.
func (h *hub) release(ctx context.Context, file string) (fleet.Release, bool, error) {
	h.ensure()
	h.mu.Lock()
	c := h.catalog
	h.mu.Unlock()
	if c != nil {
		if r, ok := releaseOf(c, file); ok {
			return r, true, nil
		}
	}
	stored, err := h.store.Catalog(ctx)
	if err != nil {
		return fleet.Release{}, false, err
	}
	r, ok := releaseOf(&stored, file)
	return r, ok, nil
}

// releaseOf returns the release of c whose zip is file.
func releaseOf(c *fleet.Catalog, file string) (fleet.Release, bool) {
	for _, r := range c.Releases {
		if r.File == file {
			return r, true
		}
	}
	return fleet.Release{}, false
}
