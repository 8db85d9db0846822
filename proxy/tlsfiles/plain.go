package tlsfiles

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"time"
)

// handshakeRecord is the first byte of every TLS connection (a handshake record).
const handshakeRecord = 0x16

// errPlainHTTP ends a connection that spoke plain HTTP to the TLS port.
var errPlainHTTP = errors.New("tlsfiles: plain HTTP on the TLS port: answered 503")

// plainAnswer tells a plain-HTTP client to come back later. A node entry point of a release
// without mutual TLS still talks plain HTTP to the proxy during an upgrade: on 503 it fetches
// from Docker Hub instead, where Go's own answer (400) would fail the kubelet's pull.
var plainAnswer = func() []byte {
	body := `{"errors":[{"code":"UNAVAILABLE","message":"this port serves TLS only"}]}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n" +
		"Connection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// AnswerPlainHTTP wraps the listener a TLS listener is built on: a connection whose first byte
// is not a TLS handshake gets a 503 and is closed. Nothing is read in Accept (a client that
// sends nothing would hold the accept loop); the check runs on the connection's first read,
// inside the handshake the server runs per connection.
func AnswerPlainHTTP(l net.Listener) net.Listener { return plainListener{l} }

type plainListener struct{ net.Listener }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &plainConn{Conn: c}, nil
}

type plainConn struct {
	net.Conn
	once sync.Once
	err  error
}

func (c *plainConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.once.Do(func() {
		if n > 0 && p[0] != handshakeRecord {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Conn.Write(plainAnswer)
			c.err = errPlainHTTP
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return n, err
}
