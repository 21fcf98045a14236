package main

import (
	"flag"
	"log/slog"
	"time"

	"github.com/thinfleet/thinfleet/fdlimit"
	"github.com/thinfleet/thinfleet/web"
)

// httpFlags are the HTTP side's: its address and limits.
type httpFlags struct {
	addr   string
	limits httpLimits
}

func httpFlagsOn(fs *flag.FlagSet) *httpFlags {
	var f httpFlags
	fs.StringVar(&f.addr, "http", ":8080", "address of the web API and downloads")
	l := &f.limits
	fs.DurationVar(&l.readTimeout, "http-read-timeout", 30*time.Second, "longest time a client may take to send a request, headers and body (headers: at most 10s)")
	fs.DurationVar(&l.idleTimeout, "http-idle-timeout", 60*time.Second, "close a kept-alive connection after this long without a request")
	fs.DurationVar(&l.writeStall, "http-write-stall", web.DefaultWriteStall, "cut a response (a download, a live page) whose client read nothing for this long; slow transfers that keep moving are never cut")
	fs.IntVar(&l.perAddr, "http-conns-per-addr", 64, "most HTTP connections one client address may hold; more are closed at once (0: no cap)")
	fs.IntVar(&l.total, "http-conns", 0, "most HTTP connections at once; beyond, new ones wait in the backlog (0: a quarter of the open files limit, at most 4096)")
	return &f
}

// httpLimits keep slow, idle and numerous clients of the HTTP side from
// holding the descriptors the broker needs for its agents.
type httpLimits struct {
	readTimeout time.Duration
	idleTimeout time.Duration
	writeStall  time.Duration
	perAddr     int
	total       int
}

// readHeaderTimeout is the time a client has to send its headers.
func (l httpLimits) readHeaderTimeout() time.Duration {
	return min(10*time.Second, l.readTimeout)
}

// resolve returns l with the total filled in from the process's open
// files limit, which it raises first.
func (l httpLimits) resolve(log *slog.Logger) httpLimits {
	fds := fdlimit.Raise(log)
	if l.total == 0 {
		l.total = 4096
		if fds > 0 {
			l.total = int(min(4096, fds/4))
		}
	}
	log.Debug("http connection limits", "per_addr", l.perAddr, "total", l.total,
		"read_timeout", l.readTimeout, "idle_timeout", l.idleTimeout, "write_stall", l.writeStall)
	return l
}
