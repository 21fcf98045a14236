package web

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/connlimit"
	"github.com/thinfleet/thinfleet/fleet"
	"github.com/thinfleet/thinfleet/internal/poll"
)

// fileCountingConn counts the bytes the connection sends with ReadFrom
// from a file: what a *net.TCPConn sends with sendfile(2).
type fileCountingConn struct {
	*net.TCPConn
	fromFile *atomic.Int64
}

func (c fileCountingConn) ReadFrom(r io.Reader) (int64, error) {
	n, err := c.TCPConn.ReadFrom(r)
	if fileOf(r) != nil {
		c.fromFile.Add(n)
	}
	return n, err
}

type fileCountingListener struct {
	net.Listener
	fromFile *atomic.Int64
}

func (l fileCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return fileCountingConn{c.(*net.TCPConn), l.fromFile}, nil
}

// TestDownloadBySendfile downloads a release, whole and resumed, through
// the server's whole stack and the connection limiter the server listens
// behind: the zip's bytes go to the connection by ReadFrom from the file
// (sendfile), not through a copy in the server's memory.
func TestDownloadBySendfile(t *testing.T) {
	_, _, store := startStore(t)
	updates := t.TempDir()
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<20/16)
	if err := os.WriteFile(filepath.Join(updates, "kiosk-1.0.zip"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("ab", 32)
	if err := store.PutCatalog(context.Background(), fleet.Catalog{
		Releases: []fleet.Release{{Name: "K", Version: "1.0", SHA256: sum, Size: int64(len(content)), Command: "true", File: "kiosk-1.0.zip"}},
	}); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Log: slog.New(slog.DiscardHandler), Store: store, UpdatesDir: updates, AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	var fromFile atomic.Int64
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Listener = connlimit.New(fileCountingListener{srv.Listener, &fromFile}, connlimit.Options{PerAddr: 10})
	srv.Start()
	t.Cleanup(srv.Close)

	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	for _, tt := range []struct {
		name   string
		header map[string]string
		status int
		want   []byte
	}{
		{"whole", nil, 200, content},
		{"resumed", map[string]string{"Range": "bytes=300000-"}, 206, content[300000:]},
		{"a range", map[string]string{"Range": "bytes=1000-900000"}, 206, content[1000:900001]},
	} {
		fromFile.Store(0)
		h := map[string]string{}
		for k, v := range bearer {
			h[k] = v
		}
		for k, v := range tt.header {
			h[k] = v
		}
		status, body := fetch(t, http.DefaultClient, srv, "/downloads/kiosk-1.0.zip", h)
		if status != tt.status || body != string(tt.want) {
			t.Fatalf("%s: %d, %d bytes; want %d and %d bytes", tt.name, status, len(body), tt.status, len(tt.want))
		}
		if got := fromFile.Load(); got != int64(len(tt.want)) {
			t.Errorf("%s: %d of %d bytes sent from the file by the connection, want all", tt.name, got, len(tt.want))
		}
	}
}

// TestDownloadFollowsCatalog: downloads are checked against the web
// server's copy of the catalog, which follows the store: a release just
// accepted is served at once, one removed stops being served.
func TestDownloadFollowsCatalog(t *testing.T) {
	_, _, store := startStore(t)
	ctx := context.Background()
	updates := t.TempDir()
	for _, f := range []string{"a-1.0.zip", "a-2.0.zip"} {
		if err := os.WriteFile(filepath.Join(updates, f), []byte("zip of "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rel := func(v string) fleet.Release {
		return fleet.Release{Name: "A", Version: v, SHA256: strings.Repeat("c"+v[:1], 32), Size: 14, Command: "true", File: "a-" + v + ".zip"}
	}
	if err := store.PutCatalog(ctx, fleet.Catalog{Releases: []fleet.Release{rel("1.0")}}); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Log: slog.New(slog.DiscardHandler), Store: store, UpdatesDir: updates, AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	get := func(file string) int {
		status, _ := fetch(t, http.DefaultClient, srv, "/downloads/"+file, bearer)
		return status
	}
	if got := get("a-1.0.zip"); got != 200 {
		t.Fatalf("a-1.0.zip: %d, want 200", got)
	}
	if got := get("a-2.0.zip"); got != 404 {
		t.Fatalf("a-2.0.zip before the catalog has it: %d, want 404", got)
	}
	// The catalog takes 2.0 and drops 1.0: 2.0 is served at once,
	// whether or not the copy has it yet.
	if err := store.PutCatalog(ctx, fleet.Catalog{Releases: []fleet.Release{rel("2.0")}}); err != nil {
		t.Fatal(err)
	}
	if got := get("a-2.0.zip"); got != 200 {
		t.Fatalf("a-2.0.zip just accepted: %d, want 200", got)
	}
	poll.Eventually(t, 10*time.Second, "a-1.0.zip refused once the catalog dropped it", func() error {
		if got := get("a-1.0.zip"); got != 404 {
			return fmt.Errorf("%d %s", got, http.StatusText(got))
		}
		return nil
	})
}
