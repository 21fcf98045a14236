package main

import (
	"archive/zip"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/internal/simfleet"
)

// writeZip makes an update zip of about size bytes (a manifest and
// random, incompressible bytes) and moves it into the updates folder in
// one rename, so the catalog never sees half of it. It returns when the
// zip landed.
func writeZip(updates, version string, size int64) (time.Time, error) {
	if updates == "" {
		return time.Time{}, errors.New("no updates folder (--updates) to publish in")
	}
	tmp, err := os.CreateTemp(filepath.Dir(filepath.Clean(updates)), ".sim-*.zip")
	if err != nil {
		return time.Time{}, err
	}
	defer os.Remove(tmp.Name())
	zw := zip.NewWriter(tmp)
	m, _ := json.Marshal(map[string]string{"name": "Simulated " + version, "version": version, "command": "true"})
	w, err := zw.Create("manifest.json")
	if err == nil {
		_, err = w.Write(m)
	}
	if err == nil {
		w, err = zw.CreateHeader(&zip.FileHeader{Name: "payload.bin", Method: zip.Store})
	}
	if err == nil {
		buf := make([]byte, 64<<10)
		for left := max(0, size-512); left > 0 && err == nil; left -= int64(len(buf)) {
			b := buf[:min(int64(len(buf)), left)]
			_, _ = rand.Read(b)
			_, err = w.Write(b)
		}
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("make zip: %w", err)
	}
	dst := filepath.Join(updates, "sim-"+version+".zip")
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return time.Time{}, fmt.Errorf("publish zip: %w", err)
	}
	return time.Now(), nil
}

// publish drops a zip of version and waits for the catalog to accept it.
func (s *simulation) publish(ctx context.Context, version string, size int64) (release, float64, error) {
	landed, err := writeZip(s.updates, version, size)
	if err != nil {
		return release{}, 0, err
	}
	var r release
	err = s.waitFor(ctx, "the catalog accepting "+version, 100*time.Millisecond, func() (bool, string) {
		got, ok, err := s.api.release(ctx, version)
		if err != nil {
			return false, err.Error()
		}
		r = got
		return ok, "not in /api/v1/updates yet"
	})
	if err != nil {
		return r, 0, err
	}
	return r, round3(time.Since(landed).Seconds()), nil
}

// waitOffers waits until every agent holds an offer of version and
// measures the offers' arrival from the release's acceptance.
func (s *simulation) waitOffers(ctx context.Context, r release, o *offerFigs) error {
	err := s.waitFor(ctx, "every agent offered "+r.Version, 100*time.Millisecond, func() (bool, string) {
		n := 0
		for _, a := range s.f.Agents() {
			if _, ok := a.OfferedAt(r.Version); ok {
				n++
			}
		}
		o.Offered = n
		return n == len(s.f.Agents()), fmt.Sprintf("%d of %d offered", n, len(s.f.Agents()))
	})
	var lat []time.Duration
	for _, a := range s.f.Agents() {
		if t, ok := a.OfferedAt(r.Version); ok {
			lat = append(lat, t.Sub(r.Added))
		}
	}
	sec := seconds(lat)
	o.P50, o.P99, o.Max = quantile(sec, 0.5), quantile(sec, 0.99), quantile(sec, 1)
	return err
}

// fanout publishes a small zip and measures its offers reaching every
// agent; nobody installs it.
func (s *simulation) fanout(ctx context.Context) error {
	o := &offerFigs{Version: fmt.Sprintf("1.%d.0", s.stamp)}
	s.res.Fanout = o
	r, accept, err := s.publish(ctx, o.Version, 4<<10)
	o.Accept = accept
	if err != nil {
		return err
	}
	err = s.waitOffers(ctx, r, o)
	s.progress("fan-out", "offered", o.Offered, "p50", o.P50, "p99", o.P99, "max", o.Max)
	return err
}

// rollout publishes a zip of the rollout size, which every agent
// downloads, verifies and reports installed; then compares the server's
// downloads with nginx's.
func (s *simulation) rollout(ctx context.Context) error {
	ro := &rolloutFigs{offerFigs: offerFigs{Version: fmt.Sprintf("1.%d.1", s.stamp)}}
	s.res.Rollout = ro
	s.f.Install(true)
	defer s.f.Install(false)
	r, accept, err := s.publish(ctx, ro.Version, s.o.zipSize)
	ro.Accept, ro.SizeBytes = accept, r.Size
	if err != nil {
		return err
	}
	var errs []error
	if err := s.waitOffers(ctx, r, &ro.offerFigs); err != nil {
		errs = append(errs, err)
	}
	err = s.waitFor(ctx, "every agent downloading "+r.Version, 100*time.Millisecond, func() (bool, string) {
		done := 0
		for _, a := range s.f.Agents() {
			if _, ok := a.DownloadOf(r.Version); ok {
				done++
			}
		}
		return done == len(s.f.Agents()), fmt.Sprintf("%d of %d downloads done", done, len(s.f.Agents()))
	})
	if err != nil {
		errs = append(errs, err)
	}
	var first, last time.Time
	for _, a := range s.f.Agents() {
		d, ok := a.DownloadOf(r.Version)
		if !ok {
			continue
		}
		if d.Err != "" {
			ro.Failed++
			if ro.FirstErr == "" {
				ro.FirstErr = a.ID() + ": " + d.Err
			}
			continue
		}
		ro.Verified++
		if first.IsZero() || d.Start.Before(first) {
			first = d.Start
		}
		if d.End.After(last) {
			last = d.End
		}
	}
	ro.Downloads = round3(last.Sub(first).Seconds())
	s.progress("downloads", "verified", ro.Verified, "failed", ro.Failed, "seconds", ro.Downloads)
	err = s.waitFor(ctx, "the API showing every agent on "+r.Version, 250*time.Millisecond, func() (bool, string) {
		n, err := s.api.count(ctx, s.o.prefix, url.Values{"version": {r.Version}})
		if err != nil {
			return false, err.Error()
		}
		ro.Installed = n
		return ro.Installed == len(s.f.Agents()), fmt.Sprintf("%d of %d on %s", ro.Installed, len(s.f.Agents()), r.Version)
	})
	ro.AllInstalled = round3(time.Since(r.Added).Seconds())
	s.progress("installed in the API", "installed", ro.Installed, "seconds_from_accept", ro.AllInstalled)
	if err != nil {
		errs = append(errs, err)
	}
	if ro.Failed > 0 {
		errs = append(errs, fmt.Errorf("%d downloads failed, first: %s", ro.Failed, ro.FirstErr))
	}
	if err := s.compare(ctx, r, ro); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// compare has every agent fetch its offered link at once from the
// server, then as many clients fetch the same zip from nginx.
func (s *simulation) compare(ctx context.Context, r release, ro *rolloutFigs) error {
	var urls []string
	for _, a := range s.f.Agents() {
		if u := a.OfferURL(r.Version); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return nil
	}
	var cpu func() time.Duration
	if s.srv != nil {
		pid := s.srv.pid()
		cpu = func() time.Duration { st, _ := readProc(pid); return st.cpu }
	}
	ro.Burst = burst(ctx, urls, r.Size, r.SHA256, cpu, s.o.timeout)
	s.progress("downloads at once from thinfleet", "clients", len(urls), "seconds", ro.Burst.Seconds, "verified", ro.Burst.Verified)
	if s.o.nginx == "" || s.o.nginx == "none" {
		ro.NginxNote = "skipped (--nginx none)"
		return nil
	}
	zipPath := filepath.Join(s.updates, "sim-"+r.Version+".zip")
	ng, err := startNginx(ctx, s.o.nginx, zipPath, len(urls))
	if err != nil {
		ro.NginxNote = "not run: " + err.Error()
		return nil
	}
	defer ng.stop()
	nurls := make([]string, len(urls))
	for i := range nurls {
		nurls[i] = ng.url
	}
	ro.Nginx = burst(ctx, nurls, r.Size, r.SHA256, ng.cpu, s.o.timeout)
	s.progress("downloads at once from nginx", "clients", len(nurls), "seconds", ro.Nginx.Seconds, "verified", ro.Nginx.Verified)
	if ro.Nginx.Seconds > 0 {
		ro.Ratio = round3(ro.Burst.Seconds / ro.Nginx.Seconds)
	}
	if ro.Nginx.CPUPerMiB > 0 && s.srv != nil {
		ro.CPURatio = round3(ro.Burst.CPUPerMiB / ro.Nginx.CPUPerMiB)
	}
	if ro.Burst.Verified < len(urls) || ro.Nginx.Verified < len(urls) {
		return fmt.Errorf("downloads at once: thinfleet verified %d, nginx %d, of %d (%s %s)",
			ro.Burst.Verified, ro.Nginx.Verified, len(urls), ro.Burst.FirstErr, ro.Nginx.FirstErr)
	}
	return nil
}

// burst fetches every url at once, each on a fresh client connection,
// and checks each body's size and sha256 (sum "" checks the size only).
// cpu, if set, reads the serving process's CPU time.
func burst(ctx context.Context, urls []string, size int64, sum string, cpu func() time.Duration, timeout time.Duration) *burstFigs {
	b := &burstFigs{Clients: len(urls)}
	c := simfleet.NewHTTPClient(timeout)
	defer c.CloseIdleConnections()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		startGo = make(chan struct{})
	)
	for _, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGo
			_, err := simfleet.Fetch(ctx, c, u, size, sum)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if b.FirstErr == "" {
					b.FirstErr = err.Error()
				}
				return
			}
			b.Verified++
		}()
	}
	var cpu0 time.Duration
	if cpu != nil {
		cpu0 = cpu()
	}
	start := time.Now()
	close(startGo)
	wg.Wait()
	b.Seconds = round3(time.Since(start).Seconds())
	if cpu != nil {
		used := cpu() - cpu0
		b.CPUSecs = round3(used.Seconds())
		if mibs := float64(size) * float64(b.Verified) / (1 << 20); mibs > 0 {
			b.CPUPerMiB = round3(float64(used.Milliseconds()) / mibs)
		}
	}
	return b
}
