package limits_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
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
