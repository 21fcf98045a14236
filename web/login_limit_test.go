package web

import (
	"net/http"
	"net/url"
	"testing"
)

// TestSignInAttemptsAreLimited guesses the admin token from one address:
// after the burst every attempt, the right token too, is turned away with
// 429 and no session.
func TestSignInAttemptsAreLimited(t *testing.T) {
	p := newPageTest(t, pageOptions{}) // signs in once
	c := newClient()
	try := func(token string) *http.Response {
		t.Helper()
		resp, err := c.PostForm(p.srv.URL+"/login", url.Values{"token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := 1; i < loginBurst; i++ {
		if resp := try("guess"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %s, want 401", i, resp.Status)
		}
	}
	resp := try(testToken)
	if resp.StatusCode != http.StatusTooManyRequests || len(resp.Cookies()) != 0 {
		t.Fatalf("after %d attempts, the right token: %s with cookies %v, want 429 and none", loginBurst, resp.Status, resp.Cookies())
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}
