//go:build !unix

package fdlimit

import "log/slog"

// Raise does nothing where there is no RLIMIT_NOFILE.
func Raise(*slog.Logger) uint64 { return 0 }
