package node_test

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/node"
	"github.com/hubcache/hubcache/proxy/upstream"
)

// standInProxy plays the hubcache proxy: go-containerregistry's registry holding images
// under cache paths ("docker.io/library/nginx"). It can be stopped and started again on the
// same address, made to answer every request with one status, or routed to a custom handler.
type standInProxy struct {
	t        *testing.T
	addr     string
	registry http.Handler
	requests atomic.Int64
	status   atomic.Int32

	mu       sync.Mutex
	srv      *http.Server
	override http.Handler
}

func newStandInProxy(t *testing.T) *standInProxy {
	t.Helper()
	p := &standInProxy{t: t, registry: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	p.serve(l)
	t.Cleanup(p.stop)
	return p
}

func (p *standInProxy) URL() *url.URL { return &url.URL{Scheme: "http", Host: p.addr} }

func (p *standInProxy) serve(l net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(p.handle), ErrorLog: log.New(io.Discard, "", 0)}
	p.mu.Lock()
	p.srv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

func (p *standInProxy) handle(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	if code := p.status.Load(); code != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(code))
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAVAILABLE","message":"stand-in"}]}`))
		return
	}
	p.mu.Lock()
	h := p.override
	p.mu.Unlock()
	if h != nil {
		h.ServeHTTP(w, r)
		return
	}
	p.registry.ServeHTTP(w, r)
}

// stop closes the listener and every connection: the proxy is gone (connection refused).
func (p *standInProxy) stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// start listens again on the same address.
func (p *standInProxy) start() {
	p.t.Helper()
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("restarting the stand-in proxy on %s: %v", p.addr, err)
	}
	p.serve(l)
}

func (p *standInProxy) setHandler(h http.Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.override = h
}

// push stores img under the cache path cachePath ("docker.io/library/nginx") and tag.
func (p *standInProxy) push(t *testing.T, cachePath, tag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(p.addr + "/" + cachePath + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing to the stand-in proxy: %v", err)
	}
}

// testNode is a running node entry point.
type testNode struct {
	url      string
	addr     string
	server   *node.Server
	registry *prometheus.Registry
}

func startNode(t *testing.T, proxyURL *url.URL, ups []upstream.Endpoint, opts ...node.Option) *testNode {
	t.Helper()
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]node.Option{node.WithRegisterer(reg), node.WithLogger(logger)}, opts...)
	srv, err := node.New(proxyURL, ups, opts...)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node Serve: %v", err)
		}
	})
	return &testNode{url: "http://" + l.Addr().String(), addr: l.Addr().String(), server: srv, registry: reg}
}

// counter reads a counter of the node's metrics by its label value.
func (n *testNode) counter(t *testing.T, metric, label string) float64 {
	t.Helper()
	mfs, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
				}
			}
		}
	}
	return 0
}

// settled waits until a request counter reaches want and returns its value. The node counts
// a request after its response is complete, which the client may see first.
func (n *testNode) settled(t *testing.T, metric, label string, want float64) float64 {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		got := n.counter(t, metric, label)
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, target string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// testWriter sends logs to the test log, so they show only when a test fails.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// gate is a body that sends first, then waits until released before sending rest.
type gate struct {
	release chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// handler answers GETs with first, flushed, then waits for the gate before writing rest.
func (g *gate) handler(first, rest []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(rest)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(first)
		http.NewResponseController(w).Flush()
		select {
		case <-g.release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(rest)
	})
}
