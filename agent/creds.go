package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// The agent's identity at the broker is a standard NATS credentials file,
// <state>/agent.creds: its user JWT, issued by the server for the id, and
// its private key, made here and never sent anywhere. The key is also
// kept alone in <state>/agent.nk, written before the first enrollment, so
// that the agent can enroll again with the same key.
//
// Either file may be found broken (a disk gone bad, a copy cut short, an
// editor). A broken file is moved aside, never silently used: a
// credentials file the connection cannot read would leave the agent
// retrying in silence for ever. The key is taken, in this order, from
// agent.nk, from what is left of agent.creds, or made anew; only the
// last needs an operator, since the server knows the device by its key.

const (
	credsFile = "agent.creds"
	keyFile   = "agent.nk"
)

// readCreds reads the credentials file at path. It returns the file's
// bytes and nil if they are usable, or the bytes and why not; a missing
// file is fs.ErrNotExist, and a file that cannot be read is an error that
// enrolling again would not fix (a permission, say) and is returned as
// such.
func readCreds(path string) (data []byte, broken, err error) {
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return data, checkCreds(data), nil
}

// checkCreds reports why data is not a credentials file the broker could
// take: a user JWT whose signature holds, and the seed of the key it names.
func checkCreds(data []byte) error {
	userJWT, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		return fmt.Errorf("no user JWT: %w", err)
	}
	claims, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return fmt.Errorf("user JWT: %w", err)
	}
	kp, err := jwt.ParseDecoratedNKey(data)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if pub, err := kp.PublicKey(); err != nil || pub != claims.Subject {
		return errors.New("the key is not the one the user JWT was issued for")
	}
	return nil
}

// moveAside renames a broken file out of the way, keeping it for a look,
// and returns its new name.
func moveAside(path string) (string, error) {
	aside := fmt.Sprintf("%s.broken-%d", path, time.Now().UnixNano())
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("move broken %s aside: %w", filepath.Base(path), err)
	}
	return aside, nil
}

// userKey loads the agent's private key from agent.nk, or failing that
// from the seed in creds (what was left of a broken credentials file, or
// nil), or makes one; a key it did not load from agent.nk is written
// there. A broken agent.nk is moved aside and said so.
func (a *Agent) userKey(creds []byte) (nkeys.KeyPair, error) {
	path := filepath.Join(a.opts.StateDir, keyFile)
	seed, err := os.ReadFile(path)
	switch {
	case err == nil:
		kp, kerr := nkeys.FromSeed(seed)
		if kerr == nil {
			return kp, nil
		}
		aside, err := moveAside(path)
		if err != nil {
			return nil, fmt.Errorf("agent: %s is corrupt (%v): %w", path, kerr, err)
		}
		a.log.Error(path+" is corrupt; looking for the key elsewhere", "err", kerr, "moved_to", aside)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("agent: key: %w", err)
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err == nil {
		a.log.Warn("key taken from the credentials file", "key_file", path)
	} else {
		if kp, err = nkeys.CreateUser(); err != nil {
			return nil, fmt.Errorf("agent: make key: %w", err)
		}
		if creds != nil {
			// The key was lost with the credentials: the server, which
			// enrolled this id with the old key, will refuse the new one.
			a.log.Error("the device's key is lost with its credentials; made a new key, which a server that enrolled this id with the old one refuses",
				"key_file", path)
		}
	}
	seed, _ = kp.Seed()
	if err := writeFileAtomic(path, seed, 0o600); err != nil {
		return nil, fmt.Errorf("agent: keep key: %w", err)
	}
	return kp, nil
}
