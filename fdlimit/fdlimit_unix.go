//go:build unix

// Package fdlimit lifts a process's limit on open files, for the server
// and the fleet simulator, which hold one connection per agent.
package fdlimit

import (
	"log/slog"
	"syscall"
)

// Raise lifts the soft limit on open files to the hard limit and
// returns it (0 when unknown). Go's runtime does the same on most
// systems; doing it here too keeps it true everywhere and lets the log
// say what the process may hold.
func Raise(log *slog.Logger) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("read the open files limit", "err", err)
		return 0
	}
	if lim.Cur < lim.Max {
		was := lim.Cur
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("raise the open files limit", "soft", was, "hard", lim.Max, "err", err)
			lim.Cur = was
		}
	}
	log.Debug("open files limit", "soft", lim.Cur, "hard", lim.Max)
	return lim.Cur
}
