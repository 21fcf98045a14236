package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/thinfleet/thinfleet/wire"
)

// ManifestName is the file at the zip's root.
const ManifestName = "manifest.json"

// Bounds on a manifest and its fields, in bytes.
const (
	maxManifestSize = 64 << 10
	maxName         = 256
	maxDescription  = 4096
	maxChannel      = 64
	maxPlatforms    = 32
	maxPlatform     = 64
)

// Manifest describes an update package: what it is and how to install it.
type Manifest struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Command is run with /bin/sh -c in the extracted directory.
	Command     string   `json:"command"`
	Description string   `json:"description,omitempty"`
	Channel     string   `json:"channel,omitempty"`
	Platforms   []string `json:"platforms,omitempty"`
}

// ParseManifest parses and validates the contents of manifest.json.
// Unknown fields are ignored, and so is a leading UTF-8 byte order mark.
// Name, version and command are required. Every error wraps [ErrRefused]
// and names each field that is wrong.
func ParseManifest(data []byte) (Manifest, error) {
	if len(data) > maxManifestSize {
		return Manifest{}, refuse("%s: larger than %s", ManifestName, formatSize(maxManifestSize))
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, refuse("%s: %s", ManifestName, jsonProblem(err))
	}
	if len(m.Platforms) == 0 {
		m.Platforms = nil // "platforms": [] says no more than no field
	}
	if problems := m.problems(); len(problems) > 0 {
		return Manifest{}, refuse("%s: %s", ManifestName, strings.Join(problems, "; "))
	}
	return m, nil
}

// jsonProblem says what is wrong with a manifest that does not decode.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not valid JSON: %v (at byte %d)", syntax, syntax.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Sprintf("want a JSON object, got %s", typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s: want %s, got %s", typ.Field, jsonKind(typ.Type.String()), typ.Value)
	}
	return fmt.Sprintf("not valid JSON: %v", err)
}

func jsonKind(goType string) string {
	if goType == "[]string" {
		return "a list of strings"
	}
	return "a string"
}

// problems lists what is wrong with m, one message a field.
func (m Manifest) problems() []string {
	var p []string
	required := func(field, v string, max int) {
		if strings.TrimSpace(v) == "" {
			p = append(p, field+": required")
		} else if len(v) > max {
			p = append(p, fmt.Sprintf("%s: longer than %d bytes", field, max))
		}
	}
	required("name", m.Name, maxName)
	if m.Version == "" {
		p = append(p, "version: required")
	} else if _, err := wire.ParseVersion(m.Version); err != nil {
		p = append(p, err.Error())
	}
	required("command", m.Command, wire.MaxCommandLength)
	if len(m.Description) > maxDescription {
		p = append(p, fmt.Sprintf("description: longer than %d bytes", maxDescription))
	}
	if len(m.Channel) > maxChannel {
		p = append(p, fmt.Sprintf("channel: longer than %d bytes", maxChannel))
	}
	if len(m.Platforms) > maxPlatforms {
		p = append(p, fmt.Sprintf("platforms: more than %d entries", maxPlatforms))
	}
	for i, pl := range m.Platforms {
		if pl == "" || len(pl) > maxPlatform {
			p = append(p, fmt.Sprintf("platforms[%d]: want 1 to %d bytes", i, maxPlatform))
			break
		}
	}
	return p
}
