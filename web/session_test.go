package web

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestSignInAndOut(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	c := newClient()

	resp, err := c.Get(p.srv.URL + "/clients?q=kiosk")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Location"), "/login?next=%2Fclients%3Fq%3Dkiosk"; resp.StatusCode != http.StatusSeeOther || got != want {
		t.Fatalf("page without a session: %s to %q, want 303 to %q", resp.Status, got, want)
	}

	resp, err = c.PostForm(p.srv.URL+"/login", url.Values{"token": {"wrong"}, "next": {"/clients"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "not the admin token") || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %s, cookies %v, body %s", resp.Status, resp.Cookies(), body)
	}

	resp, err = c.PostForm(p.srv.URL+"/login", url.Values{"token": {testToken}, "next": {"/clients?q=kiosk"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/clients?q=kiosk" {
		t.Fatalf("sign in: %s to %q, want 303 back to the page", resp.Status, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("sign in set %d cookies, want 1", len(cookies))
	}
	ck := cookies[0]
	if ck.Name != sessionCookie || len(ck.Value) < 20 || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" {
		t.Errorf("session cookie = %+v, want random, HttpOnly, SameSite=Strict, not Secure over plain http, Path=/", ck)
	}
	if other := p.signIn(t); sessionOf(t, other, p.srv.URL) == ck.Value {
		t.Error("two sign-ins got the same session")
	}

	for _, path := range []string{"/", "/clients", "/history", "/updates", "/downloads"} {
		resp, err := c.Get(p.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s signed in: %s, want 200", path, resp.Status)
		}
	}

	// The session is for pages; the API keeps its bearer token.
	resp, err = c.Get(p.srv.URL + "/api/v1/devices")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("API with a session cookie only: %s, want 401", resp.Status)
	}

	resp, err = c.Post(p.srv.URL+"/logout", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("logout: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	// The old cookie is dead on the server, not just deleted in the browser.
	req, _ := http.NewRequest("GET", p.srv.URL+"/clients", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: ck.Value})
	resp, err = newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("page with a logged-out session: %s, want 303 to the login form", resp.Status)
	}
}

func sessionOf(t *testing.T, c *http.Client, base string) string {
	u, _ := url.Parse(base)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

func TestLoginRedirectsOnlyHere(t *testing.T) {
	tests := []struct{ next, want string }{
		{"/clients?q=a", "/clients?q=a"},
		{"", "/"},
		{"https://evil.example/", "/"},
		{"//evil.example/", "/"},
		{`/\evil.example`, "/"},
		{"javascript:alert(1)", "/"},
	}
	for _, tt := range tests {
		if got := localPath(tt.next); got != tt.want {
			t.Errorf("localPath(%q) = %q, want %q", tt.next, got, tt.want)
		}
	}
}

func TestCrossSitePostsRefused(t *testing.T) {
	p := newPageTest(t, pageOptions{})
	p.device(t, "kiosk-1", kiosk("kiosk-1", "1.0", true))
	tests := []struct {
		path   string
		header map[string]string
	}{
		{"/login", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"/logout", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"/clients/kiosk-1/offer", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"/clients/kiosk-1/offer", map[string]string{"Origin": "http://evil.example"}},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", p.srv.URL+tt.path, strings.NewReader("token="+testToken))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range tt.header {
			req.Header.Set(k, v)
		}
		resp, err := p.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with %v: %s, want 403", tt.path, tt.header, resp.Status)
		}
	}
}
