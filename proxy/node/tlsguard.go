package node

import (
	"errors"
	"net"
	"sync"
)

// tlsRecordHandshake is the first byte of every TLS connection (a handshake record).
const tlsRecordHandshake = 0x16

// tlsRefusal is sent, in plain HTTP, to a client that opened with a TLS ClientHello.
// containerd falls back from HTTPS to HTTP only when the TLS error shows it reached an HTTP
// server (the reply starts with "HTTP/"); a silently closed or hanging connection fails the
// pull instead.
const tlsRefusal = "HTTP/1.1 400 Bad Request\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\n" +
	"Content-Length: 53\r\n" +
	"\r\n" +
	"Client sent a TLS handshake to a plain HTTP server.\r\n"

// errTLSHandshake is what the HTTP server reads from a connection that began with TLS.
var errTLSHandshake = errors.New("TLS handshake on the plain HTTP port")

// TLSGuard wraps a plain-HTTP listener so that a TLS ClientHello is answered at once with a
// plain HTTP 400 and the connection closed, instead of the HTTP server waiting for a
// request line that never comes.
func TLSGuard(l net.Listener) net.Listener { return &tlsGuard{Listener: l} }

type tlsGuard struct{ net.Listener }

func (g *tlsGuard) Accept() (net.Conn, error) {
	c, err := g.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c}, nil
}

// guardedConn checks the first byte read. The check happens in the connection's own
// goroutine (the HTTP server's first Read), so Accept never blocks on a slow client.
type guardedConn struct {
	net.Conn
	once    sync.Once
	refused bool
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return c.Conn.Read(p)
	}
	var n int
	var err error
	first := false
	c.once.Do(func() {
		first = true
		n, err = c.Conn.Read(p)
		if n > 0 && p[0] == tlsRecordHandshake {
			c.refused = true
			_, _ = c.Conn.Write([]byte(tlsRefusal))
			_ = c.Conn.Close()
		}
	})
	if c.refused {
		return 0, errTLSHandshake
	}
	if first {
		return n, err
	}
	return c.Conn.Read(p)
}
