package agent

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// outputTail is how much of a command's output is kept: the end, where
// the error usually is.
const outputTail = 4 << 10

// killGrace is how long a command has to exit after SIGTERM before the
// whole process group is killed; it also bounds the wait for output pipes
// that a background child keeps open after the command exits.
const killGrace = 5 * time.Second

// runCommand runs command with /bin/sh -c in dir, in a process group of
// its own, and returns the tail of its combined output. A command still
// running after timeout, or when ctx ends, is stopped with its whole
// group: SIGTERM, then SIGKILL. Children it leaves running after a
// successful exit are left alone (an install may start a service).
func runCommand(ctx context.Context, dir, command string, env []string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := newTailBuffer(outputTail)
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	newProcessGroup(cmd)
	cmd.Cancel = func() error { _ = signalGroup(cmd, false); return nil }
	cmd.WaitDelay = killGrace
	err := cmd.Run()
	output := out.String()
	if err != nil && ctx.Err() != nil {
		_ = signalGroup(cmd, true) // and whatever ignored SIGTERM
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return output, fmt.Errorf("command timed out after %s", timeout)
		}
		return output, fmt.Errorf("command stopped: %w", ctx.Err())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return output, nil
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState.Success():
		return output, nil // exited 0; a background child holds its output open
	case errors.As(err, &exit):
		return output, fmt.Errorf("command failed: %s", exit.ProcessState)
	}
	return output, fmt.Errorf("command: %w", err)
}

// tailBuffer is an io.Writer that keeps the last max bytes written to it,
// in a ring, so a chatty command costs no more memory than a quiet one.
type tailBuffer struct {
	mu   sync.Mutex
	buf  []byte
	pos  int // next write position
	full bool
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{buf: make([]byte, max)} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) >= len(t.buf) {
		copy(t.buf, p[len(p)-len(t.buf):])
		t.pos, t.full = 0, true
		return n, nil
	}
	c := copy(t.buf[t.pos:], p)
	if c < len(p) {
		copy(t.buf, p[c:])
		t.full = true
	}
	t.pos = (t.pos + len(p)) % len(t.buf)
	if t.pos == 0 && len(p) > 0 {
		t.full = true
	}
	return n, nil
}

// String returns the kept output as valid UTF-8: a rune cut in half at
// the start is dropped, and invalid bytes become U+FFFD.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.full {
		return validTail(string(t.buf[:t.pos]), len(t.buf))
	}
	s := string(t.buf[t.pos:]) + string(t.buf[:t.pos])
	for i := 0; i < utf8.UTFMax && len(s) > 0 && !utf8.RuneStart(s[0]); i++ {
		s = s[1:]
	}
	return validTail(s, len(t.buf))
}

// validTail makes s valid UTF-8 of at most n bytes, keeping its end.
func validTail(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}

// validHead makes s valid UTF-8 of at most n bytes, keeping its start.
func validHead(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
