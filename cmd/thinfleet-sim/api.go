package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/internal/simfleet"
)

// api is the server's HTTP API as an operator's script uses it.
type api struct {
	base  string
	token string
	c     *http.Client
}

func newAPI(base, token string) *api {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return &api{base: strings.TrimRight(base, "/"), token: token, c: &http.Client{Transport: t, Timeout: 60 * time.Second}}
}

// get GETs path with the admin token and returns the body of a 200.
func (p *api) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body[:min(len(body), 200)]))
	}
	return body, nil
}

// apiDevice is the part of a device the simulator reads.
type apiDevice struct {
	ID      string `json:"id"`
	Alive   bool   `json:"alive"`
	Version string `json:"version"`
}

// devices lists every device. It takes the plain list and, should the
// API answer an object (a page of a paginated list), its "devices" or
// "items" field, following a "next" cursor if there is one.
func (p *api) devices(ctx context.Context) ([]apiDevice, error) {
	b, err := p.get(ctx, "/api/v1/devices")
	if err != nil {
		return nil, err
	}
	var list []apiDevice
	if err := json.Unmarshal(b, &list); err == nil {
		return list, nil
	}
	var page struct {
		Devices []apiDevice `json:"devices"`
		Items   []apiDevice `json:"items"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	return append(page.Devices, page.Items...), nil
}

// count asks the API how many devices match query (with the simulated
// agents' id prefix as its q: their ids, and any device whose hostname
// has it), through the paginated list's total: one small answer, where
// reading the whole list to count at 10,000 devices cost the server a
// tenth of a second of CPU per poll while it was being measured.
func (p *api) count(ctx context.Context, prefix string, query url.Values) (int, error) {
	query.Set("q", prefix+"-")
	query.Set("limit", "1")
	b, err := p.get(ctx, "/api/v1/devices?"+query.Encode())
	if err != nil {
		return 0, err
	}
	var page struct {
		Total *int `json:"total"`
	}
	if err := json.Unmarshal(b, &page); err != nil || page.Total == nil {
		return 0, fmt.Errorf("devices page without a total: %.100s", b)
	}
	return *page.Total, nil
}

// aliveOf counts the devices of group the API shows alive. It reads the
// paginated list in id order (1,000 a page) only as far as the group's
// last id: the disconnect and silent scenarios poll it back to back, and
// a group of the first 1,000 agents is then one page however large the
// fleet, so the polling neither loads the server with the whole list nor
// adds a whole list's time to the figure.
func (p *api) aliveOf(ctx context.Context, group []*simfleet.Agent) (int, error) {
	in := make(map[string]bool, len(group))
	last := ""
	for _, a := range group {
		in[a.ID()] = true
		last = max(last, a.ID())
	}
	n := 0
	for cursor := ""; ; {
		path := "/api/v1/devices?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		b, err := p.get(ctx, path)
		if err != nil {
			return 0, err
		}
		var page struct {
			Devices    []apiDevice `json:"devices"`
			NextCursor string      `json:"next_cursor"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return 0, fmt.Errorf("devices page: %w", err)
		}
		for _, d := range page.Devices {
			if in[d.ID] && d.Alive {
				n++
			}
		}
		if page.NextCursor == "" || len(page.Devices) == 0 || page.Devices[len(page.Devices)-1].ID >= last {
			return n, nil
		}
		cursor = page.NextCursor
	}
}

// release is the part of an update the simulator reads.
type release struct {
	Version string    `json:"version"`
	Added   time.Time `json:"added"`
	Size    int64     `json:"size"`
	SHA256  string    `json:"sha256"`
	URL     string    `json:"url"`
}

// release returns the catalog's release of version, if it has it.
func (p *api) release(ctx context.Context, version string) (release, bool, error) {
	b, err := p.get(ctx, "/api/v1/updates")
	if err != nil {
		return release{}, false, err
	}
	var rs []release
	if err := json.Unmarshal(b, &rs); err != nil {
		return release{}, false, fmt.Errorf("updates: %w", err)
	}
	for _, r := range rs {
		if r.Version == version {
			return r, true, nil
		}
	}
	return release{}, false, nil
}

// session signs in at the login form and returns a client that carries
// the session cookie, as a browser does, for the pages.
func (p *api) session(ctx context.Context) (*http.Client, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: p.c.Transport, Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"token": {p.token}, "next": {"/clients"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("sign in: %s", resp.Status)
	}
	return c, nil
}

// latency is how long requests took.
type latency struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	P50      float64 `json:"p50_s"`
	P99      float64 `json:"p99_s"`
	Max      float64 `json:"max_s"`
	Bytes    int64   `json:"bytes_last"`
	Error    string  `json:"first_error,omitempty"`
}

// load sends n GETs of path, concurrency at a time, each with do, and
// measures them.
func load(ctx context.Context, n, concurrency int, do func(context.Context) (int64, error)) latency {
	var (
		mu    sync.Mutex
		times []time.Duration
		l     latency
	)
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				start := time.Now()
				size, err := do(ctx)
				d := time.Since(start)
				mu.Lock()
				l.Requests++
				if err != nil {
					l.Errors++
					if l.Error == "" {
						l.Error = err.Error()
					}
				} else {
					times = append(times, d)
					l.Bytes = size
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		select {
		case next <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	s := seconds(times)
	l.P50, l.P99, l.Max = quantile(s, 0.5), quantile(s, 0.99), quantile(s, 1)
	return l
}

// getPage GETs a page with a signed-in client.
func getPage(ctx context.Context, c *http.Client, u string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return n, err
}

func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	slices.Sort(out)
	return out
}

// quantile is the q-quantile of sorted s (nearest rank), 0 for none.
func quantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	i := int(q*float64(len(s))+0.5) - 1
	return round3(s[max(0, min(i, len(s)-1))])
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
