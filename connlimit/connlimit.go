// Package connlimit bounds the connections a listener hands out: so many
// per client address, so many in all. A server behind it keeps file
// descriptors for its other listeners (the broker's agents) however many
// sockets one client, or many, open and leave idle.
package connlimit

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
)

// Options are the limits; zero means no limit of that kind.
type Options struct {
	// PerAddr is the most connections one client IP address may hold. A
	// connection beyond it is closed as soon as it is accepted.
	PerAddr int
	// Total is the most connections open at once. Beyond it, Accept
	// waits: the newcomers stay in the kernel's backlog, costing this
	// process no descriptor, until a connection ends.
	Total int
	Log   *slog.Logger
}

// Listener is a net.Listener with the limits of its Options.
type Listener struct {
	net.Listener
	opts  Options
	slots chan struct{} // one token per open connection; nil without a total
	done  chan struct{}
	close sync.Once

	mu sync.Mutex
	// open counts the connections of each address; capped holds the
	// addresses refused since they were last under the cap, so each
	// burst is logged once.
	open   map[string]int
	capped map[string]bool

	refused atomic.Int64
}

// New wraps ln. Close the Listener, not ln: Close also releases an Accept
// waiting for a slot.
func New(ln net.Listener, opts Options) *Listener {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	l := &Listener{Listener: ln, opts: opts, done: make(chan struct{}), open: map[string]int{}, capped: map[string]bool{}}
	if opts.Total > 0 {
		l.slots = make(chan struct{}, opts.Total)
	}
	return l
}

// Accept waits for a free slot, then returns the next connection whose
// address is under its cap, closing those that are not.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		if l.slots != nil {
			select {
			case l.slots <- struct{}{}:
			case <-l.done:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.release()
			return nil, err
		}
		addr := host(c.RemoteAddr())
		if l.admit(addr) {
			return &conn{Conn: c, l: l, addr: addr}, nil
		}
		c.Close()
		l.release()
	}
}

func (l *Listener) admit(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.PerAddr > 0 && l.open[addr] >= l.opts.PerAddr {
		l.refused.Add(1)
		if !l.capped[addr] {
			l.capped[addr] = true
			l.opts.Log.Warn("http connections from one address over the cap: closing the new ones", "remote", addr, "cap", l.opts.PerAddr)
		}
		return false
	}
	l.open[addr]++
	return true
}

func (l *Listener) forget(addr string) {
	l.mu.Lock()
	if l.open[addr]--; l.open[addr] <= 0 {
		delete(l.open, addr)
		delete(l.capped, addr)
	}
	l.mu.Unlock()
	l.release()
}

func (l *Listener) release() {
	if l.slots != nil {
		<-l.slots
	}
}

// Close closes the listener; connections already handed out stay open.
func (l *Listener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Open is the number of connections handed out and not yet closed.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.open {
		n += c
	}
	return n
}

// Refused is the number of connections closed for their address's cap.
func (l *Listener) Refused() int64 { return l.refused.Load() }

func host(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// conn gives its slot back once, on its first Close.
type conn struct {
	net.Conn
	l    *Listener
	addr string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.forget(c.addr) })
	return err
}

// ReadFrom is the connection's own, when it has one: a *net.TCPConn sends
// a file with sendfile(2), which net/http uses for downloads only when the
// connection it is given has ReadFrom.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
