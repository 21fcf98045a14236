package web

import (
	"crypto/rand"
	"crypto/subtle"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/thinfleet/thinfleet/web/pages"
)

// The session cookie. Sessions live in the server's memory: a restart
// signs everyone out, which is the safe way to lose them.
const (
	sessionCookie   = "thinfleet_session"
	sessionLifetime = 12 * time.Hour
)

// sessions are the signed-in browsers, by their cookie's random value.
type sessions struct {
	mu      sync.Mutex
	expires map[string]time.Time
}

func (ss *sessions) create() string {
	token := rand.Text() // 26 characters of base32: 130 random bits
	now := time.Now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for t, exp := range ss.expires {
		if now.After(exp) {
			delete(ss.expires, t)
		}
	}
	ss.expires[token] = now.Add(sessionLifetime)
	return token
}

func (ss *sessions) valid(token string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	exp, ok := ss.expires[token]
	return ok && time.Now().Before(exp)
}

func (ss *sessions) end(token string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.expires, token)
}

func (s *Server) signedIn(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	return err == nil && s.sessions.valid(c.Value)
}

// requireSession lets a request through only from a signed-in browser. A
// page asked for without a session leads to the login form, and back.
func (s *Server) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.signedIn(r) {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodGet && r.URL.Path != "/live" {
			http.Redirect(w, r, "/login?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			// A page's form sent after the session ended: nothing is done;
			// sign in and go back to the page (/clients/x for
			// /clients/x/revoke) to do it again.
			http.Redirect(w, r, "/login?"+url.Values{"next": {path.Dir(r.URL.Path)}}.Encode(), http.StatusSeeOther)
			return
		}
		http.Error(w, "sign in first", http.StatusUnauthorized)
	})
}

// localPath is next when it is a path on this server, else "/": the login
// form must not send anyone elsewhere.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, `\`) {
		return "/"
	}
	if u, err := url.Parse(next); err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}

func (s *Server) handleLoginForm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := localPath(r.URL.Query().Get("next"))
		s.hub.ensure() // load the fleet while the operator types the token
		if s.signedIn(r) {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		s.render(w, r, http.StatusOK, pages.Login(pages.LoginView{Next: next}))
	})
}

func (s *Server) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		next := localPath(r.PostForm.Get("next"))
		client, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ok, warn := s.logins.Allow(client); !ok {
			if warn {
				s.log.Warn("sign-in attempts over the limit", "remote", r.RemoteAddr)
			}
			w.Header().Set("Retry-After", "10")
			s.render(w, r, http.StatusTooManyRequests, pages.Login(pages.LoginView{Next: next, Error: "Too many sign-in attempts from this address: wait a few seconds."}))
			return
		}
		token := strings.TrimSpace(r.PostForm.Get("token"))
		if subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.AdminToken)) != 1 {
			s.log.Warn("sign-in refused: wrong admin token", "remote", r.RemoteAddr)
			s.render(w, r, http.StatusUnauthorized, pages.Login(pages.LoginView{Next: next, Error: "That is not the admin token."}))
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: s.sessions.create(), Path: "/",
			MaxAge: int(sessionLifetime / time.Second), HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
		})
		s.log.Info("signed in", "remote", r.RemoteAddr)
		http.Redirect(w, r, next, http.StatusSeeOther)
	})
}

func (s *Server) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(sessionCookie); err == nil {
			s.sessions.end(c.Value)
		}
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
		})
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}

// secure reports whether the browser reached us over TLS, directly or
// through a proxy that the public URL names as https.
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(s.opts.PublicURL, "https://")
}
