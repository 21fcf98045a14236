package catalog

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/thinfleet/thinfleet/bundle"
	"github.com/thinfleet/thinfleet/fleet"
)

// sigFile is a zip's signature file as read: its text, bounded, and
// whether it is there at all. It is compared, not just its time, so that
// any change to it brings the zip to be checked again.
type sigFile struct {
	found bool
	text  string
}

// maxSigFile bounds what is read of a signature file; one is 89 bytes.
const maxSigFile = 4 << 10

// readSigFile reads the signature file of the zip at zipPath.
func readSigFile(zipPath string) (sigFile, error) {
	f, err := os.Open(bundle.SignatureFile(zipPath))
	if errors.Is(err, fs.ErrNotExist) {
		return sigFile{}, nil
	}
	if err != nil {
		return sigFile{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSigFile+1))
	if err != nil {
		return sigFile{}, err
	}
	return sigFile{found: true, text: string(data)}, nil
}

// signature decides what the zip name's signature file means: the
// signature to pass on (nil for none) and its state, or why the zip is
// refused. It does not read the zip; digest checks the signature.
func (s *Service) signature(name string, sf sigFile) (sig []byte, state, refused string) {
	sigName := name + bundle.SignatureSuffix
	if !sf.found {
		if s.key != nil {
			return nil, "", "no signature " + sigName + " (the server requires signed releases: thinfleet sign " + name + ")"
		}
		return nil, fleet.SignatureUnsigned, ""
	}
	sig, err := bundle.ParseSignature(sf.text)
	if len(sf.text) > maxSigFile {
		err = fmt.Errorf("larger than %d bytes", maxSigFile)
	}
	switch {
	case err != nil && s.key != nil:
		return nil, "", "signature " + sigName + ": " + err.Error()
	case err != nil:
		s.log.Warn("signature file unreadable, passed on as unsigned", "file", sigName, "err", err)
		return nil, fleet.SignatureUnsigned, ""
	case s.key == nil:
		return sig, fleet.SignatureUnverified, ""
	}
	return sig, fleet.SignatureVerified, ""
}

// digest reads the zip at path once, for its sha256 and size, and with a
// publisher key checks sig over the very same bytes: a zip replaced while
// read can never get one zip's signature and another's checksum. A
// signature that does not verify is bundle.ErrBadSignature, a refusal.
func (s *Service) digest(path string, sig []byte) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	r := &countingReader{r: io.TeeReader(f, h)}
	if s.key != nil {
		err = bundle.Verify(r, sig, s.key)
	} else {
		_, err = io.Copy(io.Discard, r)
	}
	if err != nil && !errors.Is(err, bundle.ErrRefused) {
		return "", 0, fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	return hex.EncodeToString(h.Sum(nil)), r.n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
