package bundle

import (
	"archive/zip"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// budget is how many bytes an entry may still expand to, and the refusal
// to give if it expands past that.
type budget struct {
	n       int64
	refusal error
}

// budget returns the tightest of the limits on e's actual size, given the
// bytes used by the entries before it. The header checks already passed;
// these hold even when the header lies.
func (a *archive) budget(e entry, used int64) budget {
	l := a.limits
	name := e.zf.Name
	b := budget{l.MaxFileSize, refuseEntry(name, "expands past %s, the limit per file (its header said %s)",
		formatSize(uint64(l.MaxFileSize)), formatSize(e.zf.UncompressedSize64))}
	if left := l.MaxTotalSize - used; left < b.n {
		b = budget{left, refuse("package expands past %s, the limit for all files", formatSize(uint64(l.MaxTotalSize)))}
	}
	c := e.zf.CompressedSize64 // bounds what archive/zip reads, so it cannot lie
	ratioCap := int64(math.MaxInt64)
	if c <= uint64(math.MaxInt64/l.MaxRatio) {
		ratioCap = max(int64(c)*l.MaxRatio, ratioFloor)
	}
	if ratioCap < b.n {
		b = budget{ratioCap, refuseEntry(name, "expands more than %d times its compressed size %s (a zip bomb?)",
			l.MaxRatio, formatSize(c))}
	}
	return b
}

// copyEntry decompresses e into w and adds its size to used, counting the
// bytes that come out rather than trusting the header.
func (a *archive) copyEntry(w io.Writer, e entry, used *int64) error {
	rc, err := e.zf.Open()
	if err != nil {
		return readError(e.zf.Name, err)
	}
	defer rc.Close()
	r := &entryReader{r: rc}
	n, err := copyLimited(w, r, a.budget(e, *used))
	*used += n
	switch {
	case r.err != nil:
		return readError(e.zf.Name, r.err)
	case err != nil && errors.Is(err, ErrRefused):
		return err
	case err != nil:
		return fmt.Errorf("write %s: %w", e.name, err)
	}
	return nil
}

// copyLimited copies r to w until EOF, and refuses with b.refusal rather
// than write more than b.n bytes.
func copyLimited(w io.Writer, r io.Reader, b budget) (int64, error) {
	n, err := io.Copy(w, io.LimitReader(r, b.n))
	if err != nil || n < b.n {
		return n, err
	}
	// At the limit: one more byte is too many. Otherwise read on to EOF,
	// where archive/zip checks the CRC.
	var one [1]byte
	switch k, err := io.ReadFull(r, one[:]); {
	case k > 0:
		return n, b.refusal
	case err != io.EOF:
		return n, err
	}
	return n, nil
}

// entryReader remembers a read error, to tell it from a write error.
type entryReader struct {
	r   io.Reader
	err error
}

func (r *entryReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// readError turns an error reading an entry into a refusal, unless it
// came from the file system.
func readError(name string, err error) error {
	var corrupt flate.CorruptInputError
	switch {
	case isIOError(err):
		return fmt.Errorf("read entry %s: %w", quote(name), err)
	case errors.Is(err, zip.ErrChecksum):
		return refuseEntry(name, "data is corrupt (checksum mismatch)")
	case errors.Is(err, zip.ErrFormat):
		return refuseEntry(name, "data does not match its header (corrupt, or a size that lies)")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return refuseEntry(name, "data is truncated")
	case errors.As(err, &corrupt):
		return refuseEntry(name, "compressed data is corrupt")
	case errors.Is(err, zip.ErrAlgorithm):
		return refuseEntry(name, "uses an unsupported compression method")
	}
	return refuseEntry(name, "data is unreadable: %v", err)
}

// zipFile is the zip's file as archive/zip reads it. A hostile header
// may point anywhere, even at a negative offset, which os.File reports as
// an *fs.PathError like a failing disk; so zipFile answers reads outside
// the file with io.EOF itself and marks the errors of reads that reach
// the file system. Any other error is the zip's fault.
type zipFile struct {
	f    *os.File
	size int64
}

func (z zipFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= z.size {
		return 0, io.EOF
	}
	short := int64(len(p)) > z.size-off
	if short {
		p = p[:z.size-off]
	}
	n, err := z.f.ReadAt(p, off)
	switch {
	case err != nil && err != io.EOF:
		return n, ioError{err}
	case short:
		return n, io.EOF
	}
	return n, err
}

// ioError is an error of the file system while reading the zip.
type ioError struct{ err error }

func (e ioError) Error() string { return e.err.Error() }
func (e ioError) Unwrap() error { return e.err }

func isIOError(err error) bool { return errors.As(err, new(ioError)) }
