package limits_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
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
	result := make(chan error, 1)
	h, body := fileHandler(t, 6<<20, result)
	addr := serve(t, limits.Config{WriteProgress: 2 * time.Second, MaxConnections: 4}, h)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []byte
	buf := make([]byte, 512<<10)
	for {
		m, err := resp.Body.Read(buf)
		got = append(got, buf[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		time.Sleep(50 * time.Millisecond) // slower than the sender, never stalled
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes, want the file's %d", len(got), len(body))
	}
	if err := <-result; err != nil {
		t.Fatalf("handler: %v", err)
	}
}
