package web

import (
	"net/http"
	"net/url"
	"testing"
)

// TestSignInAttemptsAreLimited guesses the admin token at the sign-in form
// from one address: after the budget every wrong token is turned away with
// 429, while the right token from the same address still signs in.
func TestSignInAttemptsAreLimited(t *testing.T) {
	p := newPageTest(t, pageOptions{}) // signs in once, with the right token
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
	for i := 1; i <= loginBurst; i++ {
		if resp := try("guess"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %s, want 401", i, resp.Status)
		}
	}
	resp := try("guess")
	if resp.StatusCode != http.StatusTooManyRequests || len(resp.Cookies()) != 0 {
		t.Fatalf("guess past the budget: %s with cookies %v, want 429 and none", resp.Status, resp.Cookies())
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if resp := try(testToken); resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) == 0 {
		t.Fatalf("the right token from the throttled address: %s with cookies %v, want 303 and a session", resp.Status, resp.Cookies())
	}
}

// TestBearerGuessesAreLimited guesses the admin token on the API from one
// address: after the budget wrong tokens get 429; the right token from the
// same address still gets 200.
func TestBearerGuessesAreLimited(t *testing.T) {
	a := newAPITest(t)
	get := func(token string) int {
		t.Helper()
		resp, _ := a.do(t, "/api/v1/devices", map[string]string{"Authorization": "Bearer " + token})
		return resp.StatusCode
	}
	for i := 1; i <= loginBurst; i++ {
		if got := get("guess"); got != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, got)
		}
	}
	for i := range 3 {
		if got := get("guess"); got != http.StatusTooManyRequests {
			t.Fatalf("guess %d past the budget: %d, want 429", i+1, got)
		}
		if got := get(testToken); got != http.StatusOK {
			t.Fatalf("the right token between throttled guesses: %d, want 200", got)
		}
	}
	if got := get(""); got != http.StatusTooManyRequests {
		t.Errorf("no token past the budget: %d, want 429", got)
	}
}
