package web

import (
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/thinfleet/thinfleet/web/pages"
)

// sessionCookie holds a dashboard session. Sessions are kept in a bucket
// (sessions.go), so a restart of the web server signs nobody out and
// several web servers share them; the cookie itself is never stored, only
// its hash.
const sessionCookie = "thinfleet_session"

// newSession starts a session and returns its cookie's random value:
// 26 characters of base32, 130 random bits.
func (s *Server) newSession(r *http.Request) (string, error) {
	token := rand.Text()
	return token, s.sessions.create(r.Context(), token)
}

func (s *Server) signedIn(r *http.Request) bool {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return false
	}
	ok, err := s.sessions.valid(r.Context(), c.Value)
	if err != nil {
		s.log.Error("session check", "err", err)
	}
	return ok
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
		err := s.checkToken(r, strings.TrimSpace(r.PostForm.Get("token")))
		if errors.Is(err, errThrottled) {
			w.Header().Set("Retry-After", "10")
			s.render(w, r, http.StatusTooManyRequests, pages.Login(pages.LoginView{Next: next, Error: "Too many wrong tokens from this address: wait a few seconds."}))
			return
		}
		if err != nil {
			s.log.Warn("sign-in refused: wrong admin token", "remote", r.RemoteAddr)
			s.render(w, r, http.StatusUnauthorized, pages.Login(pages.LoginView{Next: next, Error: "That is not the admin token."}))
			return
		}
		token, err := s.newSession(r)
		if err != nil {
			s.pageError(w, err)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: sessionCookie, Value: token, Path: "/",
			MaxAge: int(sessionLifetime / time.Second), HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
		})
		s.audit(r, "session.sign-in", "", "")
		s.log.Info("signed in", "remote", r.RemoteAddr)
		http.Redirect(w, r, next, http.StatusSeeOther)
	})
}

func (s *Server) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(sessionCookie); err == nil {
			signedIn := s.signedIn(r)
			if err := s.sessions.end(r.Context(), c.Value); err != nil {
				s.log.Error("sign out", "err", err)
			} else if signedIn {
				s.audit(r, "session.sign-out", "", "")
			}
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
