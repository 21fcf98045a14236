package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a "thinfleet server" process the simulator started: its
// addresses, tokens and folders, and its pid for /proc.
type server struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	natsURL  string
	apiURL   string
	data     string
	updates  string
	admin    string
	enroll   string
	logPath  string
	waitErr  error
	startLog []string
}

var (
	natsLine = regexp.MustCompile(`agents connect to: (nats://\S+)`)
	httpLine = regexp.MustCompile(`api and downloads: (https?://\S+)`)
)

// startServer starts bin as "thinfleet server" on loopback with free
// ports, its data and updates under dir (kept between runs: the devices
// enrolled stay known), and limits raised for a fleet on one address:
// enrollment at any rate, any number of HTTP connections from loopback.
// The update zips of earlier runs are removed first, so that the catalog
// starts empty. The server is killed when ctx ends.
func startServer(ctx context.Context, bin, dir string, extra []string, stderr io.Writer) (*server, error) {
	s := &server{exited: make(chan struct{}), data: filepath.Join(dir, "data"), updates: filepath.Join(dir, "updates")}
	for _, d := range []string{s.data, s.updates} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	old, _ := filepath.Glob(filepath.Join(s.updates, "*"))
	for _, p := range old {
		_ = os.Remove(p)
	}
	s.logPath = filepath.Join(dir, "server.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"server", "--data", s.data, "--updates", s.updates,
		"--nats", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--http-conns-per-addr", "0", "--enroll-rate", "1000000", "--enroll-burst", "1000000",
		"--log-level", "warn"}, extra...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = os.Environ()
	s.cmd.Stderr = logf
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			select {
			case lines <- sc.Text():
			default:
			}
		}
		s.waitErr = s.cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	context.AfterFunc(ctx, s.stop)
	deadline := time.After(60 * time.Second)
	for s.natsURL == "" || s.apiURL == "" {
		select {
		case l := <-lines:
			s.startLog = append(s.startLog, l)
			if m := natsLine.FindStringSubmatch(l); m != nil {
				s.natsURL = m[1]
			}
			if m := httpLine.FindStringSubmatch(l); m != nil {
				s.apiURL = m[1]
			}
		case <-s.exited:
			return nil, fmt.Errorf("server exited at start (%v); log in %s:\n%s", s.waitErr, s.logPath, tailFile(s.logPath, 4000))
		case <-deadline:
			s.stop()
			return nil, fmt.Errorf("server printed no addresses within 60s; log in %s", s.logPath)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	// The tokens the server generated at its first start, or kept.
	for _, t := range []struct {
		file string
		to   *string
	}{{"admin.token", &s.admin}, {"enroll.token", &s.enroll}} {
		b, err := os.ReadFile(filepath.Join(s.data, t.file))
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("server token: %w", err)
		}
		*t.to = strings.TrimSpace(string(b))
	}
	fmt.Fprintf(stderr, "server started: pid %d, nats %s, api %s, log %s\n", s.cmd.Process.Pid, s.natsURL, s.apiURL, s.logPath)
	return s, nil
}

// stop ends the server (SIGTERM, then SIGKILL after 15s) and waits.
func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// procStat is a process's CPU time and resident memory from /proc.
type procStat struct {
	at  time.Time
	cpu time.Duration // user + system
	rss int64         // bytes
}

// clockTicks is USER_HZ, 100 on every Linux there is.
const clockTicks = 100

// readProc reads pid's CPU time and RSS.
func readProc(pid int) (procStat, error) {
	st := procStat{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return st, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return st, errors.New("short /proc stat")
	}
	// Fields 14 and 15 (utime, stime) are f[11], f[12] after the name.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	st.cpu = time.Duration(ut+sys) * time.Second / clockTicks
	// Field 24 (rss, in pages) is f[21].
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	st.rss = pages * int64(os.Getpagesize())
	return st, nil
}

// cpuShare is the share of one core the process used between a and b.
func cpuShare(a, b procStat) float64 {
	wall := b.at.Sub(a.at)
	if wall <= 0 {
		return 0
	}
	return float64(b.cpu-a.cpu) / float64(wall)
}

// children lists the pids whose parent is pid (nginx's workers).
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// loadAvg is /proc/loadavg's first three figures, for the record of how
// busy the machine was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
