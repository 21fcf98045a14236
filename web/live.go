package web

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// liveEvery bounds how often one stream tells its page to refresh: a
// change shows within it, and a burst of changes (an install's progress
// on many devices) costs a page one refresh per period.
const liveEvery = 300 * time.Millisecond

// keepAliveEvery is how often an idle stream sends a comment, so proxies
// and the browser keep the connection.
const keepAliveEvery = 20 * time.Second

// liveURL is the stream a page opens: the topics it shows, for a device's
// page the device, and the hub's sequence when the page was read.
func liveURL(since uint64, topics, device string) string {
	v := url.Values{"topics": {topics}, "since": {strconv.FormatUint(since, 10)}}
	if device != "" {
		v.Set("device", device)
	}
	return "/live?" + v.Encode()
}

// handleLive is the one Server-Sent Events stream of an open page. It
// sends "change" whenever something the page shows changed; live.js then
// fetches the page again and swaps in what differs. The stream ends with
// the request or when the server closes.
func (s *Server) handleLive() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var topics topic
		for _, t := range strings.Split(q.Get("topics"), ",") {
			switch t {
			case "devices":
				topics |= topicDevices
			case "catalog":
				topics |= topicCatalog
			case "history":
				topics |= topicHistory
			case "enrollments":
				topics |= topicEnrollments
			case "groups":
				topics |= topicGroups
			case "rollouts":
				topics |= topicRollouts
			}
		}
		device := q.Get("device")
		if topics == 0 || (device != "" && wire.ValidateID(device) != nil) {
			http.Error(w, "want topics=devices,catalog,history,enrollments,groups,rollouts and an optional valid device id", http.StatusBadRequest)
			return
		}
		since, _ := strconv.ParseUint(q.Get("since"), 10, 64)
		sub := s.hub.subscribe(topics, device, since)
		defer s.hub.unsubscribe(sub)
		s.hub.wait(r.Context()) // what changes from here on is heard

		rc := http.NewResponseController(w)
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		send := func(msg string) bool {
			_, err := io.WriteString(w, msg)
			return err == nil && rc.Flush() == nil
		}
		if !send("retry: 2000\n\n") {
			return
		}
		keepAlive := time.NewTicker(keepAliveEvery)
		defer keepAlive.Stop()
		var last time.Time
		for {
			select {
			case <-r.Context().Done():
				return
			case <-s.hub.ctx.Done():
				return
			case <-keepAlive.C:
				if !send(": keep-alive\n\n") {
					return
				}
			case <-sub.ch:
				if wait := liveEvery - time.Since(last); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-r.Context().Done():
						t.Stop()
						return
					case <-s.hub.ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				}
				select { // what came while waiting is in this refresh too
				case <-sub.ch:
				default:
				}
				last = time.Now()
				if !send("event: change\ndata: {}\n\n") {
					return
				}
			}
		}
	})
}
