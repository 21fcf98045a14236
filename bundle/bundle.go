// Package bundle is thinfleet's update package: a zip with manifest.json
// at its root, the install files beside it.
//
// The server's catalog calls [Inspect] on every zip dropped into the
// updates folder; the agent calls [Extract] on every zip it downloads. Both
// treat the zip as hostile. They refuse absolute and escaping names, links
// and special files, names that collide, and archives that expand past
// [Limits], and they count the bytes actually decompressed instead of
// trusting the sizes a zip declares. Every such refusal wraps [ErrRefused]
// and says what is wrong in words meant for an operator, so callers can
// tell a bad package from a failing disk.
//
// Any zip Inspect accepts, Extract accepts too: both run the same checks,
// and Inspect decompresses every entry (writing nothing) to find corrupt or
// lying data before the catalog offers the zip to a single agent.
package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// ErrRefused is wrapped by every error that rejects a package for what it
// contains (as opposed to an I/O error while reading or writing it).
var ErrRefused = errors.New("package refused")

// refusal is a reason to reject a package. Its text is the whole message,
// without a "package refused" prefix, since operators read it on the
// dashboard.
type refusal string

func (r refusal) Error() string        { return string(r) }
func (r refusal) Is(target error) bool { return target == ErrRefused }

func refuse(format string, args ...any) error {
	return refusal(fmt.Sprintf(format, args...))
}

// refuseEntry refuses a package because of one of its entries.
func refuseEntry(name, format string, args ...any) error {
	return refusal(fmt.Sprintf("entry %s: ", quote(name)) + fmt.Sprintf(format, args...))
}

// quote renders an entry name for a message: quoted, so control characters
// and spaces show, and cut short, since a zip name may be 64 KiB long.
func quote(name string) string {
	const max = 120
	if len(name) > max {
		return strconv.Quote(name[:max]) + "…"
	}
	return strconv.Quote(name)
}

// Limits bound what a package may expand to. A field that is zero or
// negative takes its value from [DefaultLimits].
//
// MaxRatio applies only to entries that expand past one MiB: a small file
// of one repeated byte compresses far better than any sensible ratio, and
// is no threat while MaxTotalSize bounds the whole.
type Limits struct {
	MaxFiles     int   // entries in the archive
	MaxFileSize  int64 // uncompressed bytes of one file
	MaxTotalSize int64 // uncompressed bytes of all files
	MaxRatio     int64 // uncompressed/compressed per entry
}

// DefaultLimits are the limits for an update package.
var DefaultLimits = Limits{MaxFiles: 10000, MaxFileSize: 1 << 30, MaxTotalSize: 2 << 30, MaxRatio: 200}

// ratioFloor is the size up to which an entry is not held to MaxRatio.
const ratioFloor = 1 << 20

func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultLimits.MaxFiles
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = DefaultLimits.MaxFileSize
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = DefaultLimits.MaxTotalSize
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = DefaultLimits.MaxRatio
	}
	return l
}

// FileSHA256 returns the lower-case hex sha256 and the size of a file.
func FileSHA256(path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	size, err = io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// formatSize renders a byte count for an operator: 512 B, 1.5 MiB.
func formatSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
