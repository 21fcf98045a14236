package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/wire"
)

// install takes one offer through every step, reporting each: downloading,
// verifying, installing, then installed or failed. A failure is recorded
// so the version is not tried again without a retry offer; the installed
// version stays as it was. An install cut short by ctx is neither: the
// marker it may have left makes the next start report it as interrupted.
func (a *Agent) install(ctx context.Context, o wire.Offer) {
	log := a.log.With("version", o.Version, "offer", o.ID)
	log.Info("install started", "url", o.URL, "size", o.Size)
	output, err := a.installSteps(ctx, o, log)
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		log.Warn("install stopped: the agent is shutting down", "err", err)
		return
	}
	reason := err.Error()
	// A download link the server refused (expired, most likely) says
	// nothing against the version: reported as an interruption, which the
	// server offers again, with a fresh link that resumes the bytes kept.
	interrupted := errors.As(err, new(refusedError))
	if interrupted {
		reason = "interrupted: " + reason
	}
	log.Error("install failed", "err", err, "offered_again", interrupted)
	if err := a.store.update(func(s *state) {
		s.Installing = nil
		if !interrupted {
			s.recordFailure(o.Version, reason, time.Now())
		}
		if s.Interrupted != nil && sameVersion(s.Interrupted.Version, o.Version) {
			s.Interrupted = nil
		}
	}); err != nil {
		log.Error("failure not recorded", "err", err)
	}
	a.status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateFailed, Detail: reason, Output: output})
}

// installSteps does the work of install; the output is the tail of the
// command's output, once the command has run.
func (a *Agent) installSteps(ctx context.Context, o wire.Offer, log *slog.Logger) (output string, err error) {
	previous := a.store.get().Version
	var sig []byte
	if a.key != nil {
		// Nothing unsigned is even downloaded.
		if o.Signature == "" {
			return "", errors.New("refused: the offer has no signature, and this agent installs only releases signed with its publisher key")
		}
		var err error
		if sig, err = bundle.ParseSignature(o.Signature); err != nil {
			return "", fmt.Errorf("refused: %w", err)
		}
	}
	a.status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateDownloading, BytesTotal: o.Size})
	zipPath, err := a.download(ctx, o)
	if err != nil {
		return "", fmt.Errorf("download: %w", err)
	}
	// Past this point the download is complete: kept no longer, whatever
	// the outcome, so the downloads folder does not grow.
	defer os.Remove(zipPath)

	a.status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateVerifying, BytesTotal: o.Size})
	if err := verify(zipPath, o); err != nil {
		return "", fmt.Errorf("verify: %w", err)
	}
	// The signature is checked over the file as it is on disk, the very
	// bytes Extract reads next; the state folder is the agent's own.
	if a.key != nil {
		if err := bundle.VerifyFile(zipPath, sig, a.key); err != nil {
			return "", fmt.Errorf("verify: %w", err)
		}
		log.Info("signature verified")
	}

	a.status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateInstalling})
	staging := filepath.Join(a.dirs.staging, dirName(o.Version)+"-"+randomHex(4))
	if err := os.MkdirAll(a.dirs.staging, 0o700); err != nil {
		return "", fmt.Errorf("extract: %w", err)
	}
	manifest, err := bundle.Extract(zipPath, staging, a.opts.Limits)
	if err != nil {
		return "", fmt.Errorf("extract: %w", err)
	}
	defer os.RemoveAll(staging) // a no-op once kept as a release
	if !sameVersion(manifest.Version, o.Version) {
		return "", fmt.Errorf("the package is version %q, the offer says %q", manifest.Version, o.Version)
	}
	// The command run is the manifest's, which the publisher's signature
	// covers, never the offer's alone: an offer that says otherwise is
	// not the package it names.
	if manifest.Command != o.Command {
		return "", fmt.Errorf("the package's command is %q, the offer says %q", validHead(manifest.Command, 200), validHead(o.Command, 200))
	}

	// The marker goes down before the command starts: if the agent dies
	// while it runs, the next start knows, and says so.
	if err := a.store.update(func(s *state) {
		s.Installing = &installing{Version: o.Version, OfferID: o.ID, StartedAt: time.Now().UTC()}
	}); err != nil {
		return "", err
	}
	env := append(os.Environ(),
		"THINFLEET_VERSION="+o.Version,
		"THINFLEET_PREVIOUS_VERSION="+previous,
		"THINFLEET_PACKAGE_DIR="+staging,
		"THINFLEET_RELEASE_DIR="+filepath.Join(a.dirs.releases, dirName(o.Version)),
	)
	log.Info("running install command", "command", manifest.Command, "dir", staging)
	output, err = runCommand(ctx, staging, manifest.Command, env, a.opts.CommandTimeout)
	if err != nil {
		return output, err
	}

	if err := a.store.update(func(s *state) {
		s.PreviousVersion, s.Version, s.InstalledAt = s.Version, o.Version, time.Now().UTC()
		s.Installing = nil
		s.clearFailure(o.Version)
		if s.Interrupted != nil && sameVersion(s.Interrupted.Version, o.Version) {
			s.Interrupted = nil
		}
	}); err != nil {
		return output, fmt.Errorf("record the new version: %w", err)
	}
	if err := a.keepRelease(staging, o.Version, previous); err != nil {
		log.Warn("installed, but the package folder was not kept", "err", err)
	}
	log.Info("installed", "previous", previous)
	a.status(wire.Status{OfferID: o.ID, Version: o.Version, State: wire.StateInstalled, Output: output})
	a.reportVersion()
	return output, nil
}

// verify checks the downloaded file against the offer; a file that does
// not match is removed, so the next attempt downloads it afresh.
func verify(path string, o wire.Offer) error {
	sum, size, err := bundle.FileSHA256(path)
	if err != nil {
		return err
	}
	switch {
	case size != o.Size:
		err = fmt.Errorf("size is %d bytes, the offer says %d", size, o.Size)
	case sum != o.SHA256:
		err = fmt.Errorf("sha256 is %s, the offer says %s", sum, o.SHA256)
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// keepRelease moves an installed package to releases/<version> and
// removes every release but it and the previous one.
func (a *Agent) keepRelease(staging, version, previous string) error {
	if err := os.MkdirAll(a.dirs.releases, 0o700); err != nil {
		return err
	}
	dst := filepath.Join(a.dirs.releases, dirName(version))
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("replace %s: %w", dst, err)
	}
	if err := os.Rename(staging, dst); err != nil {
		return fmt.Errorf("keep package: %w", err)
	}
	entries, err := os.ReadDir(a.dirs.releases)
	if err != nil {
		return fmt.Errorf("prune releases: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if name := e.Name(); name != dirName(version) && (previous == "" || name != dirName(previous)) {
			errs = append(errs, os.RemoveAll(filepath.Join(a.dirs.releases, name)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prune releases: %w", err)
	}
	return syncDir(a.dirs.releases)
}
