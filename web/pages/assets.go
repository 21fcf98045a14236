package pages

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"path"
)

// The stylesheet and the script are ours, small, and served from the
// binary: no CDN, no third-party code in the browser.
//
//go:embed static
var static embed.FS

// Static holds the files served under /static/.
var Static, _ = fs.Sub(static, "static")

var versions = func() map[string]string {
	m := map[string]string{}
	entries, _ := fs.ReadDir(Static, ".")
	for _, e := range entries {
		b, _ := fs.ReadFile(Static, e.Name())
		sum := sha256.Sum256(b)
		m[e.Name()] = hex.EncodeToString(sum[:6])
	}
	return m
}()

// Asset is the URL of a static file, with a version that changes with
// its content, so it can be cached for long.
func Asset(name string) string {
	return path.Join("/static", name) + "?v=" + versions[name]
}
