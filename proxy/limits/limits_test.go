package limits_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/limits"
)

// serve runs h behind cfg on a real loopback listener and returns its address.
func serve(t *testing.T, cfg limits.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	cfg.Apply(srv)
	go func() { _ = srv.Serve(cfg.Listener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// stalledGet sends a GET and never reads the answer.
func stalledGet(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAReaderThatStopsReadingIsCutAndItsHandlerReturns(t *testing.T) {
	body := make([]byte, 32<<20) // far more than the socket buffers hold
	result := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(body)
		result <- err
	})
	addr := serve(t, limits.Config{WriteProgress: 300 * time.Millisecond}, h)
	stalledGet(t, addr, "/big")
	select {
	case err := <-result:
		if err == nil {
			t.Fatal("the write to a stalled reader completed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler is still blocked on a reader that stopped reading")
	}
}

func TestASlowButMovingReaderGetsTheWholeBody(t *testing.T) {
	body := strings.Repeat("x", 4<<20)
	addr := serve(t, limits.Config{WriteProgress: 2 * time.Second}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n int
	buf := make([]byte, 512<<10)
	for {
		m, err := resp.Body.Read(buf)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
		time.Sleep(50 * time.Millisecond) // slower than the sender, never stalled
	}
	if n != len(body) {
		t.Fatalf("read %d bytes, want %d", n, len(body))
	}
}

func TestRequestsOverTheInFlightCapGet503WithRetryAfter(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(2)
	addr := serve(t, limits.Config{MaxInFlight: 2}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Done()
		<-release
	}))
	defer close(release)
	for range 2 {
		stalledGet(t, addr, "/hold")
	}
	entered.Wait()
	resp, err := http.Get("http://" + addr + "/third")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d Retry-After=%q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestConnectionsOverTheCapWaitUntilOneCloses(t *testing.T) {
	addr := serve(t, limits.Config{MaxConnections: 1}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// The first connection is accepted and served.
	fmt.Fprintf(first, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first connection: %v", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_, _ = http.ReadResponse(bufio.NewReader(c), nil)
	}()
	select {
	case <-served:
		t.Fatal("a second connection was served while the cap of one was held")
	case <-time.After(300 * time.Millisecond):
	}
	_ = first.Close()
	<-served
}

func TestNegativeLimitsAreRefused(t *testing.T) {
	if err := (limits.Config{MaxInFlight: -1}).Validate(); err == nil {
		t.Fatal("a negative cap was accepted")
	}
}

// fileHandler sends a file the way a stored blob goes out: io.Copy of a bare
// *io.LimitedReader over the *os.File, which reaches the connection's ReadFrom (sendfile).
func fileHandler(t *testing.T, size int, result chan<- error) (http.Handler, []byte) {
	t.Helper()
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			result <- err
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", strconv.Itoa(size))
		n, err := io.Copy(w, &io.LimitedReader{R: f, N: int64(size)})
		if err == nil && n != int64(size) {
			err = fmt.Errorf("sent %d of %d bytes", n, size)
		}
		result <- err
	}), body
}

func TestAReaderThatStopsReadingAFileSentWithSendfileIsCut(t *testing.T) {
	result := make(chan error, 1)
	h, _ := fileHandler(t, 32<<20, result)
	addr := serve(t, limits.Config{WriteProgress: 300 * time.Millisecond, MaxConnections: 4}, h)
	stalledGet(t, addr, "/blob")
	select {
	case err := <-result:
		if err == nil {
			t.Fatal("sending the file to a stalled reader completed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler is still blocked on a reader that stopped reading")
	}
}

func TestASlowButMovingReaderGetsAWholeFileSentWithSendfile(t *testing.T) {
	// Small socket buffers on both ends, so the progress deadline, not the kernel's
	// buffering, decides: the reader takes 256 KiB/s, a 1 MiB piece would need 4 s of a 1 s
	// deadline, a 64 KiB piece takes a quarter of a second.
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			result := make(chan error, 1)
			h, body := fileHandler(t, 1<<20, result)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := limits.Config{WriteProgress: time.Second, MaxConnections: 4}
			srv := &http.Server{Handler: h}
			cfg.Apply(srv)
			l := cfg.Listener(smallSendBuffers{ln})
			if useTLS {
				l = tls.NewListener(l, selfSigned(t))
			}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close() })

			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			_ = raw.(*net.TCPConn).SetReadBuffer(16 << 10)
			conn := raw
			if useTLS {
				conn = tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
			}
			defer conn.Close()
			if _, err := fmt.Fprintf(conn, "GET /blob HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			buf := make([]byte, 32<<10)
			for {
				n, err := resp.Body.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("after %d bytes: %v", len(got), err)
				}
				time.Sleep(time.Duration(n) * time.Second / (256 << 10))
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, want the file's %d", len(got), len(body))
			}
			if err := <-result; err != nil {
				t.Fatalf("handler: %v", err)
			}
		})
	}
}

// smallSendBuffers gives accepted connections a 64 KiB send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(64 << 10)
	}
	return c, err
}

// selfSigned returns a server TLS configuration with a fresh self-signed certificate.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
