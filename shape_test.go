package thinfleet_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The import graph's shape, checked with the go command itself (go list
// -deps), so that the check adds no dependency:
//
//   - the agent binary links none of the server's packages, the embedded
//     broker, the metrics library or templ: it stays small and a server
//     change cannot break a client that was not updated;
//   - the wire contract, which both sides import, imports nothing of ours;
//   - the server's domain types (package fleet) import only the standard
//     library and wire: no broker, client or metrics library, so that any
//     part can use them without linking the store; package retry imports
//     only the standard library, so that the agent may share it.
//
// Only the packages a binary links count; tests may import what they need.

// module is this module's path.
const module = "github.com/thinfleet/thinfleet"

// pkg is the part of go list -json's output the checks read.
type pkg struct {
	ImportPath string
	Imports    []string
}

// deps lists the packages the patterns link for goos/goarch, with their
// direct imports.
func deps(t *testing.T, goos, goarch string, patterns ...string) []pkg {
	t.Helper()
	args := append([]string{"list", "-deps", "-json=ImportPath,Imports"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s (GOOS=%s GOARCH=%s): %v\n%s", strings.Join(args, " "), goos, goarch, err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list -deps %v listed no package", patterns)
	}
	return pkgs
}

// within reports whether path is prefix or a package below it.
func within(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// crossings lists, as "a imports b", each edge of pkgs' graph from a
// package that is not forbidden to one that is: where the forbidden part
// comes in, not everything it brings along.
func crossings(pkgs []pkg, forbidden func(path string) bool) []string {
	var found []string
	for _, p := range pkgs {
		if forbidden(p.ImportPath) {
			continue
		}
		for _, imp := range p.Imports {
			if forbidden(imp) {
				found = append(found, p.ImportPath+" imports "+imp)
			}
		}
	}
	return found
}

func TestAgentImportsNoServerPackage(t *testing.T) {
	forbidden := []string{
		module + "/fleet",
		module + "/store",
		module + "/services",
		module + "/web",
		module + "/broker",
		module + "/metrics",
		module + "/cmd/thinfleet",
		"github.com/nats-io/nats-server",
		"github.com/prometheus",
		"github.com/a-h/templ",
	}
	// The agent runs on more than the machine that builds it, and build
	// constraints change what links (gopsutil has a file set per OS).
	for _, target := range [][2]string{{"linux", "amd64"}, {"linux", "arm64"}, {"windows", "amd64"}, {"darwin", "arm64"}} {
		pkgs := deps(t, target[0], target[1], "./cmd/thinfleet-agent", "./agent/...")
		for _, c := range crossings(pkgs, func(path string) bool {
			return slices.ContainsFunc(forbidden, func(f string) bool { return within(path, f) })
		}) {
			t.Errorf("%s/%s: %s; want the agent to link none of %v", target[0], target[1], c, forbidden)
		}
	}
}

func TestWireImportsNothingOfOurs(t *testing.T) {
	pkgs := deps(t, "linux", "amd64", "./wire/...")
	for _, c := range crossings(pkgs, func(path string) bool {
		return within(path, module) && !within(path, module+"/wire")
	}) {
		t.Errorf("%s; want wire to import no package of %s", c, module)
	}
}

func TestDomainAndRetryImportOnlyStd(t *testing.T) {
	for _, tt := range []struct {
		pkg     string
		allowed []string // besides the standard library
	}{
		{"fleet", []string{module + "/wire"}},
		{"retry", nil}, // the agent may use it
	} {
		for _, p := range deps(t, "linux", "amd64", "./"+tt.pkg) {
			if !within(p.ImportPath, module+"/"+tt.pkg) {
				continue // wire's own imports are wire's shape
			}
			for _, imp := range p.Imports {
				if !std(imp) && !slices.ContainsFunc(tt.allowed, func(a string) bool { return within(imp, a) }) {
					t.Errorf("%s imports %s; want %s to import only the standard library and %v", p.ImportPath, imp, tt.pkg, tt.allowed)
				}
			}
		}
	}
}

// std reports whether path is a standard library package: its first
// element has no dot, as every module path's host has.
func std(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
