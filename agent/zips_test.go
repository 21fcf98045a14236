package agent

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thinfleet/thinfleet/wire"
)

// makeZip builds an update package.
func makeZip(t *testing.T, version, command string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	manifest, _ := json.Marshal(map[string]string{"name": "Update " + version, "version": version, "command": command})
	files["manifest.json"] = string(manifest)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipServer serves update zips over HTTP, with Range support, and can
// misbehave the way real networks and servers do.
type zipServer struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	cutFirst map[string]bool // first response ends halfway, connection dropped
	ranges   []string        // Range headers received
}

func newZipServer(t *testing.T) *zipServer {
	z := &zipServer{files: map[string][]byte{}, cutFirst: map[string]bool{}}
	z.Server = httptest.NewServer(http.HandlerFunc(z.serve))
	t.Cleanup(z.Close)
	return z
}

func (z *zipServer) serve(w http.ResponseWriter, r *http.Request) {
	z.mu.Lock()
	data, ok := z.files[r.URL.Path]
	cut := z.cutFirst[r.URL.Path]
	z.cutFirst[r.URL.Path] = false
	if rg := r.Header.Get("Range"); rg != "" {
		z.ranges = append(z.ranges, rg)
	}
	z.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if cut {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	http.ServeContent(w, r, "update.zip", time.Time{}, bytes.NewReader(data))
}

// set serves data at path, replacing what was there.
func (z *zipServer) set(path string, data []byte) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.files[path] = data
}

// cutFirstResponse makes the next response for path end halfway.
func (z *zipServer) cutFirstResponse(path string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.cutFirst[path] = true
}

// file returns what is served at path.
func (z *zipServer) file(path string) []byte {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.files[path]
}

func (z *zipServer) rangesSeen() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]string(nil), z.ranges...)
}

// put serves data at path and returns an offer for it.
func (z *zipServer) put(path, version, command string, data []byte) wire.Offer {
	z.mu.Lock()
	z.files[path] = data
	z.mu.Unlock()
	sum := sha256.Sum256(data)
	return wire.Offer{
		ID: "offer-" + version, Name: "Update " + version, Version: version,
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)),
		Command: command, URL: z.URL + path, Time: time.Now(),
	}
}

// logBuffer collects an agent's log for the test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// contains reports whether the log has a line with every part.
func (l *logBuffer) contains(parts ...string) bool {
	for _, line := range strings.Split(l.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
