package web

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/fleet"
)

// syncBuffer is a log destination the test reads while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// smallWindowClient reads through sockets with a small receive buffer, so
// that a client that stops reading blocks the server's writes soon.
func smallWindowClient() *http.Client {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		if err != nil {
			return err
		}
		return serr
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableCompression: true}}
}

// TestDownloadStallIsCutMovingIsNot downloads an 8 MB release twice from a
// server whose write stall is one second: a client reading slowly but
// steadily for longer than the stall gets every byte; a client that
// stops reading has its connection cut.
func TestDownloadStallIsCutMovingIsNot(t *testing.T) {
	// Two seconds: a loaded machine running -race has paused this
	// test's reader for over a second at times.
	const stall = 2 * time.Second
	_, _, store := startStore(t)
	updates := t.TempDir()
	content := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16)
	if err := os.WriteFile(filepath.Join(updates, "big-1.0.zip"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := store.PutCatalog(context.Background(), fleet.Catalog{
		Releases: []fleet.Release{{Name: "big", Version: "1.0", SHA256: strings.Repeat("ab", 32), Size: int64(len(content)), Command: "true", File: "big-1.0.zip"}},
		Target:   "1.0",
	}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	s, err := New(Options{Log: slog.New(slog.NewTextHandler(&logs, nil)), Store: store, UpdatesDir: updates, AdminToken: testToken, WriteStall: stall})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	get := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/downloads/big-1.0.zip", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := smallWindowClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("download: %s", resp.Status)
		}
		return resp
	}

	t.Run("moving", func(t *testing.T) {
		resp := get()
		// 32 KB every 20 ms: 256 pauses, so the transfer lasts at least
		// 5 s, longer than the stall, yet each write moves within it.
		// (The kernel's buffers hold some of it: the server's last
		// write may return well before the client has read it all.)
		start := time.Now()
		var got bytes.Buffer
		buf := make([]byte, 32<<10)
		for {
			n, err := io.ReadFull(resp.Body, buf)
			got.Write(buf[:n])
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				t.Fatalf("slow download cut after %d bytes: %v", got.Len(), err)
			}
			time.Sleep(20 * time.Millisecond) // the client's pace, not a wait
		}
		if !bytes.Equal(got.Bytes(), content) {
			t.Fatalf("slow download: got %d bytes, want the %d of the release", got.Len(), len(content))
		}
		t.Logf("MEASURED: slow download of %d bytes took %v with a %v write stall", len(content), time.Since(start).Round(time.Millisecond), stall)
	})

	t.Run("stalled", func(t *testing.T) {
		resp := get() // headers read, then nothing
		start := time.Now()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), "response cut") {
			if time.Now().After(deadline) {
				t.Fatalf("a client that reads nothing still holds its download after 30 s; log:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("MEASURED: stalled download cut %v after its headers (stall %v)", time.Since(start).Round(time.Millisecond), stall)
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil || n >= int64(len(content)) {
			t.Fatalf("after the cut the client read %d of %d bytes, err %v: want a short, broken body", n, len(content), err)
		}
	})
}
