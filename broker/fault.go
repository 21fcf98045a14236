package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/thinfleet/thinfleet/metrics"
)

// A JetStream file store that fails a write (a full disk, no descriptor
// left) keeps failing every write to that stream after the cause is gone,
// until the server restarts and reopens its files; acknowledged messages
// are on disk (SyncAlways) and survive the restart. The broker notices the
// fault in nats-server's own log, reports it in Fault (so /readyz tells
// the truth), and Watch ends the process's broker once the cause is gone,
// so that its supervisor (systemd, docker) starts it again.

// faultMarks are the nats-server log lines that mean a stream can no
// longer write.
var faultMarks = []string{
	"critical write error", "error opening msg block", "jetstream failed to store",
	"jetstream out of resources", "no space left on device",
}

// faults records the first JetStream write fault since start.
type faults struct {
	metrics *metrics.Metrics
	mu      sync.Mutex
	first   error
	at      time.Time
}

// note records line if it is a fault; it reports whether it was the first.
func (f *faults) note(line string) bool {
	lower := strings.ToLower(line)
	for _, m := range faultMarks {
		if strings.Contains(lower, m) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.metrics.JetStreamFault()
			if f.first != nil {
				return false
			}
			f.first, f.at = errors.New(line), time.Now()
			return true
		}
	}
	return false
}

func (f *faults) get() (error, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first, f.at
}

// Fault is the JetStream write fault the broker has had since it
// started, or nil. A broker with a fault is not ready.
func (b *Broker) Fault() error {
	err, at := b.faults.get()
	if err == nil {
		return nil
	}
	return fmt.Errorf("JetStream cannot write since %s: %v", at.UTC().Format(time.RFC3339), err)
}

// faultCheckEvery is how often Watch checks whether a fault's cause is
// gone; minFreeBytes the free space on the store's disk that counts as
// room again.
const (
	faultCheckEvery = 2 * time.Second
	minFreeBytes    = 16 << 20
)

// Watch returns nil when ctx ends, or an error once the broker has had a
// JetStream write fault and its cause is gone (room on the store's disk,
// descriptors to spare): the caller exits, and its supervisor restarts it.
// While the cause lasts, it logs the fault once a minute.
func (b *Broker) Watch(ctx context.Context) error {
	tick := time.NewTicker(faultCheckEvery)
	defer tick.Stop()
	var lastLog time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		fault := b.Fault()
		if fault == nil {
			continue
		}
		cause := causeLasts(b.opts.DataDir)
		if cause == nil {
			b.opts.Log.Error("JetStream had a write fault and its cause is gone: stopping so that the supervisor restarts the broker, which reopens the store (acknowledged messages are on disk)", "fault", fault)
			return fmt.Errorf("broker: %w; restart to recover", fault)
		}
		if time.Since(lastLog) >= time.Minute {
			lastLog = time.Now()
			b.opts.Log.Error("JetStream cannot write: not ready until the cause is gone, then the broker restarts", "fault", fault, "cause", cause)
		}
	}
}

// causeLasts reports what still stops the store in dir from writing, or
// nil.
func causeLasts(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		if free := st.Bavail * uint64(st.Bsize); free < minFreeBytes {
			return fmt.Errorf("%d bytes free on the disk of %s", free, dir)
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		if fds, err := os.ReadDir("/proc/self/fd"); err == nil && uint64(len(fds)) > lim.Cur*9/10 {
			return fmt.Errorf("%d of %d file descriptors open", len(fds), lim.Cur)
		}
	}
	return nil
}

// faultLogger is nats-server's log, watched for faults.
type faultLogger struct {
	slogAdapter
	faults *faults
	log    *slog.Logger
}

func (l faultLogger) Errorf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	l.log.Error(line)
	if l.faults.note(line) {
		l.log.Error("JetStream write fault: the store is not ready; the broker restarts once the cause is gone", "fault", line)
	}
}

func (l faultLogger) Warnf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	l.log.Warn(line)
	if l.faults.note(line) {
		l.log.Error("JetStream write fault: the store is not ready; the broker restarts once the cause is gone", "fault", line)
	}
}
