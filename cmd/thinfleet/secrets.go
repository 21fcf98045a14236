package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/thinfleet/thinfleet/web"
)

// secrets are the server's tokens. Each comes from its environment
// variable, or from its file in the data folder, or is generated once and
// kept there.
type secrets struct {
	admin, enroll, service string
	// download signs the download links in offers (HMAC); only the server
	// ever needs it.
	download  string
	generated []string // the files of those made at this start
	fromEnv   []string // the files of those the environment gave instead
	// adminFrom says where the admin token came from, for errors.
	adminFrom string
}

// strongAdminToken refuses an admin token with less than about 128 random
// bits (web.CheckAdminToken), saying where it came from and how to make a
// good one.
func strongAdminToken(token, from string) error {
	if err := web.CheckAdminToken(token); err != nil {
		return fmt.Errorf("the admin token from %s is too weak: %v. Make one with `openssl rand -hex 16`, "+
			"or remove it (unset the variable, delete the file) and thinfleet generates one in the data folder", from, err)
	}
	return nil
}

func loadSecrets(dataDir string, getenv func(string) string) (secrets, error) {
	var s secrets
	for _, sec := range []struct {
		env, file string
		dst       *string
	}{
		{"THINFLEET_ADMIN_TOKEN", "admin.token", &s.admin},
		{"THINFLEET_ENROLL_TOKEN", "enroll.token", &s.enroll},
		{"THINFLEET_SERVICE_TOKEN", "service.token", &s.service},
		{"THINFLEET_DOWNLOAD_KEY", "download.key", &s.download},
	} {
		if v := getenv(sec.env); v != "" {
			*sec.dst = v
			if sec.dst == &s.admin {
				s.adminFrom = sec.env + " (or the file named by " + sec.env + "_FILE)"
			}
			s.fromEnv = append(s.fromEnv, sec.file)
			continue
		}
		if sec.dst == &s.admin {
			s.adminFrom = filepath.Join(dataDir, sec.file)
		}
		v, made, err := fileSecret(filepath.Join(dataDir, sec.file))
		if err != nil {
			return secrets{}, err
		}
		*sec.dst = v
		if made {
			s.generated = append(s.generated, sec.file)
		}
	}
	return s, nil
}

// keptSecret returns a token from its environment variable env or its
// file in dataDir, and never makes one: for what must match the tokens of
// a server that already runs (nats-config), a new token is a silent
// mismatch, so a missing one is an error that says where to get it.
func keptSecret(dataDir string, getenv func(string) string, env, file string) (string, error) {
	if v := getenv(env); v != "" {
		return v, nil
	}
	v, err := readSecret(filepath.Join(dataDir, file))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s holds no %s: run thinfleet server/broker/tokens --data %s first, or set %s",
			dataDir, file, dataDir, env)
	}
	return v, err
}

// readSecret reads a token from path; a missing file is fs.ErrNotExist.
func readSecret(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("%s is empty: delete it to have a new token made", path)
	}
	return v, nil
}

// fileSecret reads a token from path, or makes one and writes it there
// (mode 0600, exclusively, so two starts never disagree).
func fileSecret(path string) (string, bool, error) {
	v, err := readSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return v, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", false, fmt.Errorf("make data folder: %w", err)
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	v = base64.RawURLEncoding.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("write token: %w", err)
	}
	_, err = f.WriteString(v + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("write token: %w", err)
	}
	return v, true, nil
}
