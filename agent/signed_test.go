package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/wire"
)

// publisher is a key pair, its public half in a file for Options.
type publisher struct {
	priv    ed25519.PrivateKey
	pubFile string
}

func newPublisher(t *testing.T) publisher {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := bundle.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "publisher.pub")
	writeFile(t, path, string(data))
	return publisher{priv: priv, pubFile: path}
}

// sign returns the offer's signature of data.
func (p publisher) sign(t *testing.T, data []byte) string {
	t.Helper()
	sig, err := bundle.Sign(bytes.NewReader(data), p.priv)
	if err != nil {
		t.Fatal(err)
	}
	return bundle.EncodeSignature(sig)
}

// serveAs makes the offer o describe data, as a server that lies about
// what it serves would: size and sha256 match the bytes sent, so only
// the signature can tell.
func serveAs(z *zipServer, o wire.Offer, data []byte) wire.Offer {
	z.set(strings.TrimPrefix(o.URL, z.URL), data)
	sum := sha256.Sum256(data)
	o.SHA256, o.Size = hex.EncodeToString(sum[:]), int64(len(data))
	return o
}

// TestSignedReleasesOnly attacks an agent given a publisher key with
// packages that are not what the publisher signed. Each is refused before
// anything is extracted, its download deleted, and the version installed
// before (1.0, with its package folder) stays as it was.
func TestSignedReleasesOnly(t *testing.T) {
	pub := newPublisher(t)
	other := newPublisher(t)
	tests := []struct {
		name       string
		offer      func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer
		wantSteps  []string
		wantDetail string
	}{
		{
			name: "signed by the publisher",
			offer: func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer {
				o.Signature = pub.sign(t, genuine)
				return o
			},
			wantSteps: []string{"downloading", "verifying", "installing", "installed"},
		},
		{
			name:       "no signature",
			offer:      func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer { return o },
			wantSteps:  []string{"failed"},
			wantDetail: "the offer has no signature",
		},
		{
			name: "signed with another key",
			offer: func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer {
				o.Signature = other.sign(t, genuine)
				return o
			},
			wantSteps:  []string{"downloading", "verifying", "failed"},
			wantDetail: "signature does not verify against the publisher key",
		},
		{
			name: "one byte flipped, the offer's sha256 made to match",
			offer: func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer {
				o.Signature = pub.sign(t, genuine)
				tampered := slices.Clone(genuine)
				tampered[len(tampered)/2] ^= 0x01
				return serveAs(z, o, tampered)
			},
			wantSteps:  []string{"downloading", "verifying", "failed"},
			wantDetail: "signature does not verify against the publisher key",
		},
		{
			name: "truncated, the offer's size made to match",
			offer: func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer {
				o.Signature = pub.sign(t, genuine)
				return serveAs(z, o, genuine[:len(genuine)-1])
			},
			wantSteps:  []string{"downloading", "verifying", "failed"},
			wantDetail: "signature does not verify against the publisher key",
		},
		{
			name: "too long, the offer's size made to match",
			offer: func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer {
				o.Signature = pub.sign(t, genuine)
				return serveAs(z, o, append(slices.Clone(genuine), 0))
			},
			wantSteps:  []string{"downloading", "verifying", "failed"},
			wantDetail: "signature does not verify against the publisher key",
		},
		{
			name: "another signed package's signature",
			offer: func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer {
				o.Signature = pub.sign(t, makeZip(t, "1.1", "true", map[string]string{}))
				return o
			},
			wantSteps:  []string{"downloading", "verifying", "failed"},
			wantDetail: "signature does not verify against the publisher key",
		},
		{
			name: "the genuine package, offered with another command",
			offer: func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer {
				o.Signature = pub.sign(t, genuine)
				o.Command = "echo pwned; " + o.Command // leaves the mark if run
				return o
			},
			wantSteps:  []string{"downloading", "verifying", "installing", "failed"},
			wantDetail: "the package's command is",
		},
		{
			name: "a package with another command, signed by another key",
			offer: func(t *testing.T, z *zipServer, genuine []byte, o wire.Offer) wire.Offer {
				evil := makeZip(t, "1.1", "touch pwned", map[string]string{})
				o.Signature = other.sign(t, evil)
				return serveAs(z, o, evil)
			},
			wantSteps:  []string{"downloading", "verifying", "failed"},
			wantDetail: "signature does not verify against the publisher key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFleet(t, -1)
			z := newZipServer(t)
			out, dir := t.TempDir(), t.TempDir()
			seedState(t, dir, func(s *state) { s.Version = "1.0" })
			writeFile(t, filepath.Join(dir, "releases", "1.0", "app.txt"), "version 1.0")
			ta := startAgent(t, f.url(), Options{StateDir: dir, PublisherKey: pub.pubFile})
			waitReady(t, f, "dev-1", 1)

			// The command leaves a mark: it must run only for the genuine
			// package. Extraction leaves one too (the package's file).
			cmd := "touch " + filepath.Join(out, "ran")
			genuine := makeZip(t, "1.1", cmd, map[string]string{"payload": strings.Repeat("p", 5000)})
			o := tt.offer(t, z, genuine, z.put("/u.zip", "1.1", cmd, genuine))
			f.offer("dev-1", o)
			waitFor(t, "install of 1.1 ends", func() (bool, string) { return done(f, "dev-1", "1.1") })

			if got := steps(f.statuses("dev-1"), "1.1"); !slices.Equal(got, tt.wantSteps) {
				t.Errorf("steps = %v, want %v", got, tt.wantSteps)
			}
			st := lastStatus(f, "dev-1", "1.1")
			_, ranErr := os.Stat(filepath.Join(out, "ran"))
			if tt.wantDetail == "" {
				if ranErr != nil || ta.store.get().Version != "1.1" {
					t.Errorf("genuine package: command ran: %v, version %q; want it run and 1.1", ranErr, ta.store.get().Version)
				}
				return
			}
			if !strings.Contains(st.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want %q", st.Detail, tt.wantDetail)
			}
			if ranErr == nil {
				t.Error("the install command ran")
			}
			if s := ta.store.get(); s.Version != "1.0" {
				t.Errorf("version = %q, want 1.0 kept", s.Version)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "releases", "1.0", "app.txt")); err != nil || string(got) != "version 1.0" {
				t.Errorf("releases/1.0 touched: %q, %v", got, err)
			}
			for _, sub := range []string{"staging", "downloads"} {
				if got := listDir(t, filepath.Join(dir, sub)); len(got) > 0 {
					t.Errorf("%s = %v, want empty (nothing extracted, the download deleted)", sub, got)
				}
			}
			if got := listDir(t, filepath.Join(dir, "releases")); !slices.Equal(got, []string{"1.0"}) {
				t.Errorf("releases = %v, want only 1.0", got)
			}
			if vs := f.versions("dev-1"); vs[len(vs)-1].Version != "1.0" {
				t.Errorf("version reported = %+v, want 1.0", vs[len(vs)-1])
			}
		})
	}
}

func TestPublisherKeyFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pub")
	writeFile(t, bad, "not a key")
	for _, path := range []string{bad, filepath.Join(dir, "missing.pub")} {
		if _, err := New(Options{Server: "nats://127.0.0.1:1", StateDir: t.TempDir(), ID: "x", PublisherKey: path}); err == nil {
			t.Errorf("New with publisher key %s: no error", path)
		}
	}
}

// TestReplayedOffer replays offers the way someone who recorded them
// would: a stale one, and a rollback the agent took before, sent again
// after the fleet moved on, before and after the agent restarts. Each is
// refused, counted, and changes nothing.
func TestReplayedOffer(t *testing.T) {
	f := startFleet(t, -1)
	z := newZipServer(t)
	dir := t.TempDir()
	seedState(t, dir, func(s *state) { s.Version = "2.0" })
	ta := startAgent(t, f.url(), Options{StateDir: dir})
	waitReady(t, f, "dev-1", 1)
	offer := func(version, id string, edit func(*wire.Offer)) wire.Offer {
		o := z.put("/"+version+".zip", version, "true", makeZip(t, version, "true", map[string]string{}))
		o.ID = id
		edit(&o)
		return o
	}
	rollback := func(o *wire.Offer) { o.Rollback = true }

	stale := offer("3.0", "stale", func(o *wire.Offer) { o.Time = time.Now().Add(-wire.OfferLifetime - time.Minute) })
	f.offer("dev-1", stale)
	waitFor(t, "the stale offer refused", func() (bool, string) {
		return ta.log.contains("offer refused", "offer=stale", "stale: made 1h1m0s ago"), ""
	})

	back := offer("1.0", "rollback-1", rollback)
	f.offer("dev-1", back)
	waitFor(t, "rollback to 1.0", func() (bool, string) { return done(f, "dev-1", "1.0") })
	f.offer("dev-1", offer("2.0", "forward-1", func(*wire.Offer) {}))
	waitFor(t, "2.0 again", func() (bool, string) { return done(f, "dev-1", "2.0") })

	f.offer("dev-1", back) // the rollback, replayed
	waitFor(t, "the replayed rollback refused", func() (bool, string) {
		return ta.log.contains("offer refused", "offer=rollback-1", "replayed", "refused_total=2"), ""
	})
	ta.stop(t)

	reports := len(f.versions("dev-1"))
	again := startAgent(t, f.url(), Options{StateDir: dir})
	waitReady(t, f, "dev-1", reports+1)
	f.offer("dev-1", back)
	waitFor(t, "the replayed rollback refused after a restart", func() (bool, string) {
		return again.log.contains("offer refused", "offer=rollback-1", "replayed", "refused_total=1"), ""
	})
	// Proof that the agent handled the replay and whatever came after it:
	// a fresh offer of the same rollback is taken. What follows asserts on
	// the statuses the server stored, so the wait is for the last of them
	// to arrive there, not for the agent's state (written before its
	// "installed" status is sent).
	f.offer("dev-1", offer("1.0", "rollback-2", rollback))
	waitFor(t, "a fresh rollback to 1.0, reported installed", func() (bool, string) {
		st := lastStatusOf(f, "dev-1", "rollback-2")
		return st.State == wire.StateInstalled, fmt.Sprintf("%+v", st)
	})
	if v := again.store.get().Version; v != "1.0" {
		t.Errorf("version = %q after the fresh rollback, want 1.0", v)
	}

	if got, want := steps(f.statuses("dev-1"), "3.0"), []string(nil); !slices.Equal(got, want) {
		t.Errorf("the stale offer of 3.0 got statuses %v", got)
	}
	want := []string{"downloading", "verifying", "installing", "installed"}
	if got := steps(f.statuses("dev-1"), "1.0"); !slices.Equal(got, append(slices.Clone(want), want...)) {
		t.Errorf("steps of 1.0 = %v, want two installs: the rollback and the fresh one, no replay", got)
	}
	if s := again.store.get(); !slices.Equal(s.Offers, []string{"rollback-1", "forward-1", "rollback-2"}) {
		t.Errorf("offers taken = %v", s.Offers)
	}
}

// TestRollbackOnlyWhenAsked: a signed, genuine, older release is not
// installed unless the offer asks for the rollback.
func TestRollbackOnlyWhenAsked(t *testing.T) {
	pub := newPublisher(t)
	f := startFleet(t, -1)
	z := newZipServer(t)
	dir := t.TempDir()
	seedState(t, dir, func(s *state) { s.Version = "2.0" })
	ta := startAgent(t, f.url(), Options{StateDir: dir, PublisherKey: pub.pubFile})
	waitReady(t, f, "dev-1", 1)
	data := makeZip(t, "1.0", "true", map[string]string{})
	o := z.put("/1.0.zip", "1.0", "true", data)
	o.Signature = pub.sign(t, data)

	f.offer("dev-1", o)
	waitFor(t, "the downgrade ignored", func() (bool, string) {
		return ta.log.contains("offer ignored", "version=1.0 ", "older than the installed 2.0"), ""
	})
	if got := steps(f.statuses("dev-1"), "1.0"); len(got) > 0 || ta.store.get().Version != "2.0" {
		t.Fatalf("a downgrade not asked for: statuses %v, version %q", got, ta.store.get().Version)
	}
	o.ID, o.Rollback = "asked", true
	f.offer("dev-1", o)
	waitFor(t, "the rollback asked for", func() (bool, string) { return done(f, "dev-1", "1.0") })
	if s := ta.store.get(); s.Version != "1.0" || s.PreviousVersion != "2.0" {
		t.Errorf("state = %+v, want 1.0 over 2.0", s)
	}
}

// TestExpiredLinkResumes: a download link refused mid-download (it
// expired) fails the install as an interruption, keeps the bytes, and the
// next offer's fresh link resumes them.
func TestExpiredLinkResumes(t *testing.T) {
	f := startFleet(t, -1)
	data := makeZip(t, "1.1", "true", map[string]string{"big": randomHex(20000)})
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RequestURI()+" "+r.Header.Get("Range"))
		first := len(seen) == 1
		mu.Unlock()
		switch {
		case r.URL.Query().Get("sig") == "old" && first:
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case r.URL.Query().Get("sig") == "old":
			http.Error(w, "download refused: the link has expired", http.StatusForbidden)
		default:
			http.ServeContent(w, r, "u.zip", time.Time{}, bytes.NewReader(data))
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	ta := startAgent(t, f.url(), Options{StateDir: dir})
	waitReady(t, f, "dev-1", 1)
	sum := sha256.Sum256(data)
	o := wire.Offer{ID: "o1", Name: "U", Version: "1.1", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)),
		Command: "true", URL: srv.URL + "/downloads/u.zip?sig=old", Time: time.Now()}
	f.offer("dev-1", o)
	waitFor(t, "the install fails", func() (bool, string) { return done(f, "dev-1", "1.1") })
	st := lastStatus(f, "dev-1", "1.1")
	if st.State != wire.StateFailed || !strings.HasPrefix(st.Detail, "interrupted: ") || !strings.Contains(st.Detail, "403") {
		t.Fatalf("status = %+v, want failed as interrupted by a 403", st)
	}
	if s := ta.store.get(); s.Failed != nil {
		t.Errorf("failures recorded %+v: the next offer would be ignored", s.Failed)
	}
	if got := listDir(t, filepath.Join(dir, "downloads")); len(got) != 1 {
		t.Fatalf("downloads = %v, want the partial file kept", got)
	}

	o.ID, o.URL = "o2", srv.URL+"/downloads/u.zip?sig=fresh"
	f.offer("dev-1", o)
	waitFor(t, "installed with the fresh link", func() (bool, string) {
		return lastStatus(f, "dev-1", "1.1").State == wire.StateInstalled, ""
	})
	mu.Lock()
	defer mu.Unlock()
	if want := "/downloads/u.zip?sig=fresh bytes=" + strconv.Itoa(len(data)/2) + "-"; !slices.Contains(seen, want) {
		t.Errorf("requests %q, want the fresh link to resume: %q", seen, want)
	}
}
