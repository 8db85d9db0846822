package node_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/node"
	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/hubcache/hubcache/test/fakehub"
)

// hangGuard bounds waits that only end if the code under test works, so a broken build
// fails instead of hanging. It is not a timing assertion.
const hangGuard = 60 * time.Second

// fixture is a hub (the upstream), a stand-in proxy, and one image known to both.
type fixture struct {
	hub      *fakehub.Hub
	proxy    *standInProxy
	img      v1.Image
	manifest []byte
	digest   v1.Hash
	layer    v1.Hash
	layerRaw []byte
}

func newFixture(t *testing.T, hubOpts ...fakehub.Option) *fixture {
	t.Helper()
	f := &fixture{hub: fakehub.New(t, hubOpts...), proxy: newStandInProxy(t)}
	f.img = fakehub.RandomImage(t, 2, 256<<10, false)
	f.hub.Push(t, "library/nginx", "1.27", f.img)
	f.proxy.push(t, "docker.io/library/nginx", "1.27", f.img)
	f.hub.Reset()
	f.proxy.requests.Store(0)
	var err error
	if f.manifest, err = f.img.RawManifest(); err != nil {
		t.Fatal(err)
	}
	if f.digest, err = f.img.Digest(); err != nil {
		t.Fatal(err)
	}
	layers, err := f.img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if f.layer, err = layers[0].Digest(); err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if f.layerRaw, err = io.ReadAll(rc); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) upstreams(t *testing.T) []upstream.Endpoint {
	t.Helper()
	u, err := upstream.ParseEndpoint("docker.io=" + f.hub.URL())
	if err != nil {
		t.Fatal(err)
	}
	return []upstream.Endpoint{u}
}

var manifestAccept = http.Header{"Accept": {
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
}}

func TestForwardingPreservesBytesAndHeaders(t *testing.T) {
	f := newFixture(t)
	n := startNode(t, f.proxy.URL(), f.upstreams(t))
	direct := f.proxy.URL().String()
	manifestPath := "/v2/docker.io/library/nginx/manifests/1.27"
	blobPath := "/v2/docker.io/library/nginx/blobs/" + f.layer.String()
	rng := http.Header{"Range": {"bytes=100-1099"}}

	tests := []struct {
		name        string
		method      string
		path        string
		header      http.Header
		wantStatus  int
		wantBody    []byte
		sameHeaders []string
	}{
		{name: "a manifest GET", method: "GET", path: manifestPath, header: manifestAccept, wantStatus: 200, wantBody: f.manifest,
			sameHeaders: []string{"Content-Type", "Docker-Content-Digest", "Content-Length"}},
		{name: "a manifest HEAD", method: "HEAD", path: manifestPath, header: manifestAccept, wantStatus: 200, wantBody: []byte{},
			sameHeaders: []string{"Content-Type", "Docker-Content-Digest", "Content-Length"}},
		{name: "a manifest by digest", method: "GET", path: "/v2/docker.io/library/nginx/manifests/" + f.digest.String(), header: manifestAccept, wantStatus: 200, wantBody: f.manifest,
			sameHeaders: []string{"Content-Type", "Docker-Content-Digest"}},
		{name: "a blob GET", method: "GET", path: blobPath, wantStatus: 200, wantBody: f.layerRaw,
			sameHeaders: []string{"Content-Length", "Docker-Content-Digest"}},
		{name: "a ranged blob GET", method: "GET", path: blobPath, header: rng, wantStatus: 206, wantBody: f.layerRaw[100:1100],
			sameHeaders: []string{"Content-Range", "Content-Length"}},
		{name: "a 404 from the proxy is passed through, not fallen back", method: "GET", path: "/v2/docker.io/library/nginx/manifests/missing", wantStatus: 404,
			sameHeaders: []string{"Content-Type"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := do(t, tc.method, direct+tc.path, tc.header)
			got := do(t, tc.method, n.url+tc.path, tc.header)
			if got.status != tc.wantStatus || want.status != tc.wantStatus {
				t.Fatalf("status via node %d, direct %d; want %d (body %s)", got.status, want.status, tc.wantStatus, got.body)
			}
			if tc.wantBody != nil && !bytes.Equal(got.body, tc.wantBody) {
				t.Fatalf("body via node differs: %d bytes, want %d", len(got.body), len(tc.wantBody))
			}
			if !bytes.Equal(got.body, want.body) {
				t.Fatal("body via node differs from the proxy's")
			}
			for _, h := range tc.sameHeaders {
				if got.header.Get(h) != want.header.Get(h) || want.header.Get(h) == "" {
					t.Errorf("%s via node %q, direct %q", h, got.header.Get(h), want.header.Get(h))
				}
			}
		})
	}
	if c := f.hub.Counts(); c.TotalManifestGET()+c.TotalManifestHEAD()+c.TotalBlobGET()+c.Token+c.Challenged != 0 {
		t.Errorf("upstream was contacted while the proxy answered: %+v", c)
	}
	if got := n.counter(t, "hubcache_node_requests_total", "fallback"); got != 0 {
		t.Errorf("fallback requests = %v; want 0", got)
	}
	if got := n.settled(t, "hubcache_node_requests_total", "forwarded", float64(len(tests))); got != float64(len(tests)) {
		t.Errorf("forwarded requests = %v; want %d", got, len(tests))
	}
	if got := n.counter(t, "hubcache_node_response_bytes_total", "forwarded"); got < float64(len(f.layerRaw)) {
		t.Errorf("forwarded bytes = %v; want at least %d", got, len(f.layerRaw))
	}
}

func TestForwardingPassesRedirectsToTheClient(t *testing.T) {
	f := newFixture(t)
	f.proxy.setHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://s3.example.invalid/bucket/blob?X-Amz-Signature=abc", http.StatusTemporaryRedirect)
	}))
	n := startNode(t, f.proxy.URL(), f.upstreams(t))
	got := do(t, "GET", n.url+"/v2/docker.io/library/nginx/blobs/"+f.layer.String(), nil)
	if got.status != http.StatusTemporaryRedirect || !strings.HasPrefix(got.header.Get("Location"), "http://s3.example.invalid/") {
		t.Fatalf("got %d Location %q; want the proxy's 307 as it is", got.status, got.header.Get("Location"))
	}
}

// readFirst reads len(want) bytes from body and reports them on a channel, so the test can
// check they arrived while the sender is still holding back the rest.
func readFirst(body io.Reader, size int) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b := make([]byte, size)
		if _, err := io.ReadFull(body, b); err != nil {
			ch <- nil
			return
		}
		ch <- b
	}()
	return ch
}

func checkStreams(t *testing.T, target string, g *gate, first, rest []byte) {
	t.Helper()
	resp, err := http.Get(target)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	select {
	case got := <-readFirst(resp.Body, len(first)):
		if !bytes.Equal(got, first) {
			t.Fatal("the first bytes differ")
		}
	case <-time.After(hangGuard):
		t.Fatal("the first bytes did not reach the client while the sender held back the rest")
	}
	g.open()
	tail, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tail, rest) {
		t.Fatalf("the rest differs: %d bytes, want %d", len(tail), len(rest))
	}
}

func TestForwardingStreamsBodiesAsTheyArrive(t *testing.T) {
	f := newFixture(t)
	g := newGate(t)
	first, rest := bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 5000)
	f.proxy.setHandler(g.handler(first, rest))
	n := startNode(t, f.proxy.URL(), f.upstreams(t))
	checkStreams(t, n.url+"/v2/docker.io/library/nginx/blobs/"+f.layer.String(), g, first, rest)
}

func TestFallbackStreamsBodiesAsTheyArrive(t *testing.T) {
	g := newGate(t)
	first, rest := bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 5000)
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/v2/library/nginx/blobs/", g.handler(first, rest))
	up := startHTTP(t, mux)
	proxy := newStandInProxy(t)
	proxy.stop()
	u, err := upstream.ParseEndpoint("docker.io=" + up)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, proxy.URL(), []upstream.Endpoint{u})
	// The fallback verifies the digest: ask for the digest of the bytes the gate sends.
	sum := sha256.Sum256(append(append([]byte{}, first...), rest...))
	checkStreams(t, n.url+"/v2/docker.io/library/nginx/blobs/sha256:"+hex.EncodeToString(sum[:]), g, first, rest)
}

func startHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

func TestFallbackWhenTheProxyIsDown(t *testing.T) {
	f := newFixture(t)
	f.proxy.stop()
	n := startNode(t, f.proxy.URL(), f.upstreams(t), node.WithBreaker(1, time.Hour))

	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		wantStatus int
		wantBody   []byte
	}{
		{name: "a rewritten manifest path", method: "GET", path: "/v2/docker.io/library/nginx/manifests/1.27", header: manifestAccept, wantStatus: 200, wantBody: f.manifest},
		{name: "the mirror form with ns", method: "GET", path: "/v2/library/nginx/manifests/1.27?ns=docker.io", header: manifestAccept, wantStatus: 200, wantBody: f.manifest},
		{name: "the mirror form without ns", method: "GET", path: "/v2/library/nginx/manifests/" + f.digest.String(), header: manifestAccept, wantStatus: 200, wantBody: f.manifest},
		{name: "a manifest HEAD", method: "HEAD", path: "/v2/docker.io/library/nginx/manifests/1.27", header: manifestAccept, wantStatus: 200, wantBody: []byte{}},
		{name: "a blob", method: "GET", path: "/v2/docker.io/library/nginx/blobs/" + f.layer.String(), wantStatus: 200, wantBody: f.layerRaw},
		{name: "a ranged blob", method: "GET", path: "/v2/docker.io/library/nginx/blobs/" + f.layer.String(), header: http.Header{"Range": {"bytes=10-99"}}, wantStatus: 206, wantBody: f.layerRaw[10:100]},
		{name: "an unknown tag is upstream's 404", method: "GET", path: "/v2/docker.io/library/nginx/manifests/nope", header: manifestAccept, wantStatus: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := do(t, tc.method, n.url+tc.path, tc.header)
			if got.status != tc.wantStatus {
				t.Fatalf("status %d; want %d (body %s)", got.status, tc.wantStatus, got.body)
			}
			if tc.wantBody != nil && !bytes.Equal(got.body, tc.wantBody) {
				t.Fatalf("body: %d bytes, want %d", len(got.body), len(tc.wantBody))
			}
			if tc.wantStatus == 200 && strings.Contains(tc.path, "/manifests/") {
				if got.header.Get("Docker-Content-Digest") != f.digest.String() {
					t.Errorf("Docker-Content-Digest %q; want %s", got.header.Get("Docker-Content-Digest"), f.digest)
				}
				if got.header.Get("Content-Type") == "" {
					t.Error("no Content-Type")
				}
			}
			if tc.wantStatus == 206 && got.header.Get("Content-Range") == "" {
				t.Error("206 without Content-Range")
			}
		})
	}
	if c := f.hub.Counts(); c.ManifestGET["library/nginx:1.27"] != 2 || c.TotalBlobGET() != 2 {
		t.Errorf("upstream counts %+v; want 2 GETs of library/nginx:1.27 and 2 blob GETs", c)
	}
	if got := n.settled(t, "hubcache_node_requests_total", "fallback", float64(len(tests))); got != float64(len(tests)) {
		t.Errorf("fallback requests = %v; want %d", got, len(tests))
	}
	rd := readyz(t, n)
	if !rd.Ready || rd.Mode != "fallback" || rd.ProxyError == "" {
		t.Errorf("readyz = %+v; want ready, in fallback mode, with the proxy error", rd)
	}
}

func TestWhatTheProxyAnswersDecidesOnFallback(t *testing.T) {
	tests := []struct {
		status       int
		wantFallback bool
	}{
		{http.StatusBadGateway, true},
		{http.StatusServiceUnavailable, true},
		{http.StatusGatewayTimeout, true},
		{http.StatusInternalServerError, false},
		{http.StatusTooManyRequests, false},
		{http.StatusNotFound, false},
		{http.StatusUnauthorized, false},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			f := newFixture(t)
			f.proxy.status.Store(int32(tc.status))
			n := startNode(t, f.proxy.URL(), f.upstreams(t), node.WithBreaker(1, time.Hour))
			for range 2 { // the second request shows the proxy was not written off
				got := do(t, "GET", n.url+"/v2/docker.io/library/nginx/manifests/1.27", manifestAccept)
				if tc.wantFallback {
					if got.status != 200 || !bytes.Equal(got.body, f.manifest) {
						t.Fatalf("status %d; want the manifest from upstream", got.status)
					}
				} else if got.status != tc.status {
					t.Fatalf("status %d; want the proxy's %d passed through", got.status, tc.status)
				}
			}
			if f.proxy.requests.Load() != 2 {
				t.Errorf("the proxy got %d requests; want 2", f.proxy.requests.Load())
			}
			wantUpstream := 0
			if tc.wantFallback {
				wantUpstream = 2
			}
			if got := f.hub.Counts().TotalManifestGET(); got != wantUpstream {
				t.Errorf("upstream manifest GETs = %d; want %d", got, wantUpstream)
			}
		})
	}
}

func TestAProxyThatSendsNoHeadersInTimeIsFallenBackFrom(t *testing.T) {
	f := newFixture(t)
	g := newGate(t)
	f.proxy.setHandler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-g.release:
		case <-r.Context().Done():
		}
	}))
	n := startNode(t, f.proxy.URL(), f.upstreams(t), node.WithProxyHeaderTimeout(200*time.Millisecond))
	got := do(t, "GET", n.url+"/v2/docker.io/library/nginx/manifests/1.27", manifestAccept)
	if got.status != 200 || !bytes.Equal(got.body, f.manifest) {
		t.Fatalf("status %d; want the manifest from upstream", got.status)
	}
	if got := n.counter(t, "hubcache_node_proxy_failures_total", "timeout"); got != 1 {
		t.Errorf("timeout failures = %v; want 1", got)
	}
}

func TestRecoveryBackToForwarding(t *testing.T) {
	f := newFixture(t)
	var now atomic.Int64
	now.Store(time.Unix(1_000_000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	n := startNode(t, f.proxy.URL(), f.upstreams(t), node.WithBreaker(1, 30*time.Second), node.WithClock(clock))
	path := n.url + "/v2/docker.io/library/nginx/manifests/1.27"

	get := func(what string) {
		t.Helper()
		got := do(t, "GET", path, manifestAccept)
		if got.status != 200 || !bytes.Equal(got.body, f.manifest) {
			t.Fatalf("%s: status %d, want the manifest", what, got.status)
		}
	}
	counts := func() (proxy int64, upstream int) {
		return f.proxy.requests.Load(), f.hub.Counts().TotalManifestGET()
	}

	get("proxy up")
	if p, u := counts(); p != 1 || u != 0 {
		t.Fatalf("proxy up: proxy %d, upstream %d requests; want 1, 0", p, u)
	}

	f.proxy.stop()
	get("proxy just stopped")
	if p, u := counts(); p != 1 || u != 1 {
		t.Fatalf("proxy stopped: proxy %d, upstream %d; want 1, 1", p, u)
	}
	if rd := readyz(t, n); !rd.Ready || rd.Mode != "fallback" {
		t.Fatalf("readyz = %+v; want ready in fallback mode", rd)
	}

	f.proxy.start()
	get("proxy back, within the cool-down")
	if p, u := counts(); p != 1 || u != 2 {
		t.Fatalf("within the cool-down the node asked the proxy again: proxy %d, upstream %d; want 1, 2", p, u)
	}

	now.Add(int64(30 * time.Second))
	get("cool-down over")
	if p, u := counts(); p != 2 || u != 2 {
		t.Fatalf("after the cool-down: proxy %d, upstream %d; want 2, 2", p, u)
	}
	get("forwarding again")
	if p, u := counts(); p != 3 || u != 2 {
		t.Fatalf("after recovery: proxy %d, upstream %d; want 3, 2", p, u)
	}
	if rd := readyz(t, n); !rd.Ready || rd.Mode != "forwarding" {
		t.Fatalf("readyz = %+v; want ready and forwarding", rd)
	}
}

func TestHostileRequestsAreRefusedWithoutContactingAnything(t *testing.T) {
	f := newFixture(t)
	n := startNode(t, f.proxy.URL(), f.upstreams(t))
	long := strings.Repeat("a", 200)
	tests := []struct {
		name   string
		method string
		target string
		status int
		code   string
	}{
		{"dot-dot escapes", "GET", "/v2/docker.io/library/../../../etc/manifests/x", 400, "NAME_INVALID"},
		{"an encoded slash", "GET", "/v2/docker.io/library%2Fnginx/manifests/1.27", 400, "NAME_INVALID"},
		{"an encoded dot-dot", "GET", "/v2/docker.io/%2e%2e/nginx/manifests/1.27", 400, "NAME_INVALID"},
		{"an empty component", "GET", "/v2/docker.io//nginx/manifests/1.27", 400, "NAME_INVALID"},
		{"a bad digest", "GET", "/v2/docker.io/library/nginx/blobs/sha256:1234", 400, "DIGEST_INVALID"},
		{"a name over 255 characters", "GET", "/v2/docker.io/" + long + "/" + long + "/manifests/x", 400, "NAME_INVALID"},
		{"an unknown registry", "GET", "/v2/evil.example.com/x/manifests/1", 404, "NAME_UNKNOWN"},
		{"an unknown registry by IP", "GET", "/v2/169.254.169.254:80/latest/manifests/x", 404, "NAME_UNKNOWN"},
		{"an unknown registry in ns", "GET", "/v2/x/y/manifests/1?ns=quay.io", 404, "NAME_UNKNOWN"},
		{"a push", "POST", "/v2/docker.io/library/nginx/blobs/uploads/", 405, "UNSUPPORTED"},
		{"an upload status", "GET", "/v2/docker.io/library/nginx/blobs/uploads/abc", 405, "UNSUPPORTED"},
		{"a malformed tag", "GET", "/v2/docker.io/library/nginx/manifests/-x", 404, "MANIFEST_UNKNOWN"},
		{"a tag list", "GET", "/v2/docker.io/library/nginx/tags/list", 404, "UNSUPPORTED"},
		{"a delete", "DELETE", "/v2/docker.io/library/nginx/manifests/1.27", 405, "UNSUPPORTED"},
		{"the catalog", "GET", "/v2/_catalog", 404, "UNSUPPORTED"},
		{"a path outside /v2/", "GET", "/token?scope=x", 404, "UNSUPPORTED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := do(t, tc.method, n.url+tc.target, nil)
			if got.status != tc.status {
				t.Fatalf("status %d; want %d (body %s)", got.status, tc.status, got.body)
			}
			var body struct {
				Errors []struct{ Code string } `json:"errors"`
			}
			if err := json.Unmarshal(got.body, &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != tc.code {
				t.Fatalf("body %s; want one %s error", got.body, tc.code)
			}
		})
	}
	if p := f.proxy.requests.Load(); p != 0 {
		t.Errorf("the proxy got %d requests", p)
	}
	if c := f.hub.Counts(); c.TotalManifestGET()+c.TotalManifestHEAD()+c.TotalBlobGET()+c.TotalBlobHEAD()+c.Token+c.Challenged != 0 {
		t.Errorf("upstream was contacted: %+v", c)
	}
	if got := n.counter(t, "hubcache_node_requests_total", "rejected"); got != float64(len(tests)) {
		t.Errorf("rejected = %v; want %d", got, len(tests))
	}
}

func TestATLSClientHelloIsAnsweredInPlainHTTPAtOnce(t *testing.T) {
	f := newFixture(t)
	n := startNode(t, f.proxy.URL(), f.upstreams(t))
	dialer := &net.Dialer{Deadline: time.Now().Add(hangGuard)}
	conn, err := tls.DialWithDialer(dialer, "tcp", n.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the handshake must fail
	if err == nil {
		conn.Close()
		t.Fatal("a TLS handshake succeeded on the plain port")
	}
	// containerd falls back from HTTPS to HTTP on exactly this error (its isTLSError):
	// a record header that reads "HTTP/". A reset or a timeout would fail the pull.
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) || string(rh.RecordHeader[:]) != "HTTP/" {
		t.Fatalf("TLS dial error %v; want a RecordHeaderError showing \"HTTP/\"", err)
	}
	if got := do(t, "GET", n.url+"/v2/", nil); got.status != 200 {
		t.Fatalf("plain HTTP after the TLS attempt: status %d", got.status)
	}
}

// net/http alone answers a ClientHello at once only if the hello happens to contain a
// newline byte (it reads a request line first); otherwise the client waits for the header
// timeout. A hello without one must be answered at once as well.
func TestAClientHelloWithoutNewlineIsAnsweredAtOnce(t *testing.T) {
	f := newFixture(t)
	n := startNode(t, f.proxy.URL(), f.upstreams(t))
	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(hangGuard)); err != nil {
		t.Fatal(err)
	}
	// A TLS 1.2 handshake record header and the start of a ClientHello, no 0x0a anywhere.
	hello := []byte{0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03}
	hello = append(hello, bytes.Repeat([]byte{0x42}, 64)...)
	if _, err := conn.Write(hello); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the reply: %v (got %q)", err, reply)
	}
	// The guard's own answer, not net/http's 400 after its header timeout.
	if !bytes.HasPrefix(reply, []byte("HTTP/1.1 400 ")) || !bytes.Contains(reply, []byte("TLS handshake")) {
		t.Fatalf("reply %q; want the plain HTTP 400 that names the TLS handshake", reply)
	}
}

func TestFallbackUsesDockerConfigCredentialsOnlyForPublicRepositories(t *testing.T) {
	f := newFixture(t, fakehub.WithPrivateRepositories("alice", "s3cret", "alice/private"))
	f.hub.Push(t, "alice/private", "v1", f.img)
	f.proxy.stop()
	public := "/v2/docker.io/library/nginx/manifests/1.27"
	private := "/v2/docker.io/alice/private/manifests/v1"
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	cfg := `{"auths":{"https://index.docker.io/v1/":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	withCreds := node.WithKeychain(upstream.DockerConfigKeychain(dir))

	t.Run("without credentials a private repository is refused with DENIED", func(t *testing.T) {
		n := startNode(t, f.proxy.URL(), f.upstreams(t))
		got := do(t, "GET", n.url+private, manifestAccept)
		if got.status != http.StatusForbidden || !strings.Contains(string(got.body), "DENIED") {
			t.Fatalf("status %d; want 403 DENIED (body %s)", got.status, got.body)
		}
	})
	t.Run("Docker Hub's config key is used for a public docker.io repository", func(t *testing.T) {
		f.hub.Reset()
		n := startNode(t, f.proxy.URL(), f.upstreams(t), withCreds)
		got := do(t, "GET", n.url+public, manifestAccept)
		if got.status != 200 || !bytes.Equal(got.body, f.manifest) {
			t.Fatalf("status %d; want the manifest (body %s)", got.status, got.body)
		}
		if c := f.hub.Counts(); c.TokenWithCredentials == 0 {
			t.Errorf("no token request carried the credentials: %+v", c)
		}
	})
	t.Run("the credentials are never used for a repository anonymous upstream refuses", func(t *testing.T) {
		f.hub.Reset()
		n := startNode(t, f.proxy.URL(), f.upstreams(t), withCreds)
		for _, path := range []string{private, "/v2/docker.io/alice/private/blobs/" + f.layer.String()} {
			got := do(t, "GET", n.url+path, manifestAccept)
			if got.status != http.StatusForbidden || !strings.Contains(string(got.body), "DENIED") {
				t.Errorf("%s: status %d; want 403 DENIED (body %s)", path, got.status, got.body)
			}
		}
		c := f.hub.Counts()
		if c.TokenWithCredentials != 0 {
			t.Errorf("%d token requests carried the credentials for a private repository", c.TokenWithCredentials)
		}
		if c.Denied["alice/private"] == 0 || c.ManifestHEAD["alice/private:latest"] == 0 {
			t.Errorf("want the anonymous check and anonymous requests refused upstream: denied %v, HEADs %v", c.Denied, c.ManifestHEAD)
		}
	})
}

func TestWhenProxyAndUpstreamAreBothDownTheAnswerIsUnavailable(t *testing.T) {
	f := newFixture(t)
	f.proxy.stop()
	f.hub.SetMode(fakehub.Down())
	n := startNode(t, f.proxy.URL(), f.upstreams(t))
	got := do(t, "GET", n.url+"/v2/docker.io/library/nginx/manifests/1.27", manifestAccept)
	if got.status != http.StatusServiceUnavailable || !strings.Contains(string(got.body), "UNAVAILABLE") {
		t.Fatalf("status %d body %s; want 503 UNAVAILABLE", got.status, got.body)
	}
	if got := n.settled(t, "hubcache_node_requests_total", "error", 1); got != 1 {
		t.Errorf("errors = %v; want 1", got)
	}
	if rd := readyz(t, n); !rd.Ready {
		t.Errorf("readyz = %+v; want ready: the node itself still serves", rd)
	}
}

type readiness struct {
	Ready      bool   `json:"ready"`
	Mode       string `json:"mode"`
	ProxyError string `json:"proxyLastError"`
}

func readyz(t *testing.T, n *testNode) readiness {
	t.Helper()
	rec := httptest.NewRecorder()
	n.server.AdminHandler(n.registry).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var rd readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil {
		t.Fatalf("readyz body %q: %v", rec.Body.String(), err)
	}
	if (rec.Code == 200) != rd.Ready {
		t.Fatalf("readyz status %d but ready=%v", rec.Code, rd.Ready)
	}
	return rd
}
