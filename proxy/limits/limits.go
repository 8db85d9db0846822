// Package limits bounds what one client can cost a server: how many connections it may hold,
// how many requests may be in progress, and how long a response may wait on a reader that
// stopped reading. The proxy and the node entry point both use it.
package limits

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Defaults sized for the memory limits in manifests/base: a stalled request costs about a
// 64 KiB copy buffer plus its goroutine and connection buffers (under 100 KiB), so 2048 of
// them stay under 200 MiB; a reader that makes no progress for 60 s is cut.
const (
	DefaultMaxConnections    = 4096
	DefaultMaxInFlight       = 2048
	DefaultWriteProgress     = 60 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
)

// Config is the set of limits of one server. A zero field means "no limit".
type Config struct {
	// MaxConnections caps open connections; further ones wait in the listen backlog.
	MaxConnections int
	// MaxInFlight caps requests being handled; more get 503 with Retry-After.
	MaxInFlight int
	// WriteProgress is how long one write may wait on the client: a reader that takes no
	// bytes for that long is disconnected. The deadline moves forward with every write.
	WriteProgress time.Duration
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections nobody uses.
	IdleTimeout time.Duration
}

// Defaults returns the default limits.
func Defaults() Config {
	return Config{
		MaxConnections:    DefaultMaxConnections,
		MaxInFlight:       DefaultMaxInFlight,
		WriteProgress:     DefaultWriteProgress,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		IdleTimeout:       DefaultIdleTimeout,
	}
}

// Validate refuses negative values.
func (c Config) Validate() error {
	if c.MaxConnections < 0 || c.MaxInFlight < 0 || c.WriteProgress < 0 || c.ReadHeaderTimeout < 0 || c.IdleTimeout < 0 {
		return errors.New("limits must not be negative (0: no limit)")
	}
	return nil
}

// Apply sets the server's timeouts and wraps its handler with the in-flight cap and the
// write progress deadline. The listener is wrapped separately with Listener.
func (c Config) Apply(s *http.Server) {
	s.ReadHeaderTimeout = c.ReadHeaderTimeout
	s.IdleTimeout = c.IdleTimeout
	s.Handler = c.Handler(s.Handler)
}

// Handler wraps h with the in-flight cap and the write progress deadline.
func (c Config) Handler(h http.Handler) http.Handler {
	if c.WriteProgress > 0 {
		h = progressHandler(h, c.WriteProgress)
	}
	if c.MaxInFlight > 0 {
		h = inFlightHandler(h, c.MaxInFlight)
	}
	return h
}

// Listener caps the connections accepted from l at max (0: no cap).
func (c Config) Listener(l net.Listener) net.Listener {
	if c.MaxConnections <= 0 {
		return l
	}
	return &limitListener{Listener: l, sem: make(chan struct{}, c.MaxConnections), done: make(chan struct{})}
}

// limitListener blocks Accept while max connections are open: extra clients wait in the
// kernel's backlog instead of costing memory here.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	conn, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: conn, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// ReadFrom keeps the accepted connection's ReadFrom (sendfile from a file) reachable.
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// inFlightHandler answers 503 TOOMANYREQUESTS (with Retry-After) when max requests are
// already being handled: a burst costs a short answer, not memory.
func inFlightHandler(h http.Handler, max int) http.Handler {
	sem := make(chan struct{}, max)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			body := `{"errors":[{"code":"TOOMANYREQUESTS","message":"server busy, retry"}]}`
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(body))
			return
		}
		defer func() { <-sem }()
		h.ServeHTTP(w, r)
	})
}

// progressChunk is the most written under one deadline: a large body (a 4 MiB manifest) is
// written in pieces so that a slow but moving reader is never cut, and a stalled one is.
const progressChunk = 64 << 10

func progressHandler(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d, tls: r.TLS != nil}
		// A deadline left by the previous request on this connection must not cut this one.
		pw.renew()
		h.ServeHTTP(pw, r)
		// The server flushes the last buffered bytes after the handler returns; they get
		// one more period.
		pw.renew()
	})
}

// progressWriter moves the connection's write deadline forward before every write and
// flush.
type progressWriter struct {
	http.ResponseWriter
	rc  *http.ResponseController
	d   time.Duration
	tls bool // a timed-out write breaks a TLS connection for good
}

func (w *progressWriter) renew() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *progressWriter) WriteHeader(code int) {
	w.renew()
	w.ResponseWriter.WriteHeader(code)
}

func (w *progressWriter) Write(p []byte) (int, error) {
	var written int
	for len(p) > 0 {
		n := min(len(p), progressChunk)
		w.renew()
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// ReadFrom lets a stored file reach the connection's ReadFrom (sendfile, over plain TCP)
// whole, with no piece-by-piece overhead, while a slow but moving reader is still never cut:
// when the deadline passes and bytes went out since it was set, it is set again and the send
// goes on; a period with no byte sent cuts the reader. So a stalled reader is cut after one
// to two periods here, instead of one. Over TLS (a timed-out write breaks the connection) and
// for anything but a bare *io.LimitedReader (the shape sendfile takes), the body goes through
// Write, in pieces of progressChunk.
func (w *progressWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	lr, limited := src.(*io.LimitedReader)
	if !ok || !limited || w.tls {
		return io.Copy(writerOnly{w}, src)
	}
	var total int64
	for {
		w.renew()
		n, err := rf.ReadFrom(lr) // the net package counts lr.N down as it sends
		total += n
		if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
	}
}

// writerOnly hides ReadFrom, so io.Copy writes through Write.
type writerOnly struct{ io.Writer }

// FlushError is what http.ResponseController.Flush calls.
func (w *progressWriter) FlushError() error {
	w.renew()
	return w.rc.Flush()
}

// Flush serves callers that use http.Flusher directly.
func (w *progressWriter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
