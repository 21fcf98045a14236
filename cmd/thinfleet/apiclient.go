package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// apiFlags are the flags of every command that talks to a running
// server through its JSON API: where it is, and where its admin token is.
type apiFlags struct {
	api  *string
	data *string
}

func apiFlagsOn(fs *flag.FlagSet) apiFlags {
	return apiFlags{
		api:  fs.String("api", "http://127.0.0.1:8080", "the thinfleet server's HTTP `URL`, or host:port"),
		data: dataFlag(fs),
	}
}

// client returns the API client the flags name, with the admin token from
// THINFLEET_ADMIN_TOKEN or else the admin.token file in --data.
func (f apiFlags) client(e env) (*apiClient, error) {
	token := e.getenv("THINFLEET_ADMIN_TOKEN")
	if token == "" {
		data, err := os.ReadFile(filepath.Join(*f.data, "admin.token"))
		if err != nil {
			return nil, errors.New("set THINFLEET_ADMIN_TOKEN (or run where --data holds admin.token)")
		}
		token = strings.TrimSpace(string(data))
	}
	return newAPIClient(*f.api, token), nil
}

// apiClient calls the JSON API of one thinfleet server (/api/v1/...) with
// the admin token. Every command that talks to a running server uses it,
// so all of them say the same thing when the server is not there.
type apiClient struct {
	// base is the server's address, http://host:port, no trailing slash.
	base  string
	token string
	http  *http.Client
}

func newAPIClient(api, token string) *apiClient {
	return &apiClient{base: apiBase(api), token: token, http: &http.Client{Timeout: apiTimeout}}
}

// apiBase is the server's address as --api gives it, a URL or host:port
// (http then), without a trailing slash.
func apiBase(api string) string {
	api = strings.TrimRight(strings.TrimSpace(api), "/")
	if !strings.Contains(api, "://") {
		api = "http://" + api
	}
	return api
}

// apiTimeout bounds one call to the server's API.
const apiTimeout = 30 * time.Second

// apiError is the server's refusal of a request: its status and the
// message of its JSON error.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	if e.Message == "" {
		return http.StatusText(e.Status)
	}
	return e.Message
}

// isStatus reports whether err is the server's refusal with status.
func isStatus(err error, status int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == status
}

// get asks for path (under /api/v1, e.g. "/devices") and decodes the JSON
// answer into out.
func (c *apiClient) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

// do sends method to path (under /api/v1) with in as its JSON body (none
// when nil) and decodes a 2xx answer's JSON into out (unless nil). Any
// other status is an *apiError with the server's message.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/v1"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return unreachable(c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
		}
		return &apiError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode the answer of %s %s: %w", method, path, err)
	}
	return nil
}

// unreachable says in words that the server at base did not answer a
// request, and why, as far as the error tells.
func unreachable(base string, err error) error {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var why string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.As(err, &dnsErr):
		why = "no such host " + dnsErr.Name
	case errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err):
		why = "no answer in time"
	case errors.As(err, &opErr):
		why = opErr.Err.Error()
	default:
		return err // not a network failure: a bad URL, a canceled request
	}
	return fmt.Errorf("no thinfleet server at %s: %s; is it running? (--api)", base, why)
}
