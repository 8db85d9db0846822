package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/testenv"
)

// env is one test's world: a fake Docker Hub and a fresh proxy in front of it.
type env struct {
	hub   *fakehub.Hub
	proxy *proxyServer
}

func newEnv(t *testing.T, opts ...proxyOption) *env {
	t.Helper()
	hub := fakehub.New(t)
	return &env{hub: hub, proxy: startProxy(t, hub.URL(), opts...)}
}

// proxyServer is a proxy served on 127.0.0.1 for one test, with a count of the requests it
// received (to show that a client really fetched from it).
type proxyServer struct {
	URL  string // "http://127.0.0.1:PORT"
	Host string // "127.0.0.1:PORT"

	mu   sync.Mutex
	seen map[string]int // "GET manifests", "HEAD blobs", …
}

type proxyConfig struct {
	tagTTL          time.Duration
	maxManifestSize int64
}

type proxyOption func(*proxyConfig)

// withTagTTL sets how long the proxy trusts a cached tag before revalidating it.
func withTagTTL(d time.Duration) proxyOption { return func(c *proxyConfig) { c.tagTTL = d } }

// withMaxManifestSize sets the proxy's cap on upstream manifests.
func withMaxManifestSize(n int64) proxyOption { return func(c *proxyConfig) { c.maxManifestSize = n } }

func startProxy(t *testing.T, hubURL string, opts ...proxyOption) *proxyServer {
	t.Helper()
	cfg := proxyConfig{tagTTL: time.Hour, maxManifestSize: 4 << 20}
	for _, o := range opts {
		o(&cfg)
	}
	p := &proxyServer{seen: map[string]int{}}
	h := newProxyHandler(t, hubURL, cfg)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.record(r)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// newProxyHandler builds the proxy in-process, as `hubcache proxy` does, with a data
// directory of its own and docker.io fetched from the hub. Its logs are shown when the test
// fails.
func newProxyHandler(t *testing.T, hubURL string, cfg proxyConfig) http.Handler {
	t.Helper()
	u, err := url.Parse(hubURL)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := server.New(context.Background(), t.TempDir(), map[string]*url.URL{"docker.io": u},
		server.WithTagTTL(cfg.tagTTL),
		server.WithMaxManifestSize(cfg.maxManifestSize),
		server.WithDockerConfigDir(t.TempDir()), // anonymous, whatever the machine has
		server.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	)
	if err != nil {
		t.Fatalf("building the proxy: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the proxy: %v", err)
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.Tail(80))
		}
	})
	return srv.Handler()
}

// syncBuffer collects log lines from any goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Tail returns the last n lines.
func (b *syncBuffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(strings.TrimRight(b.buf.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proxyServer) record(r *http.Request) {
	kind := "other"
	switch {
	case strings.Contains(r.URL.Path, "/manifests/"):
		kind = "manifests"
	case strings.Contains(r.URL.Path, "/blobs/"):
		kind = "blobs"
	}
	p.mu.Lock()
	p.seen[r.Method+" "+kind]++
	p.mu.Unlock()
}

// Seen returns how many requests of method for kind ("manifests", "blobs") the proxy got.
func (p *proxyServer) Seen(method, kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[method+" "+kind]
}

// ResetSeen forgets the requests seen so far.
func (p *proxyServer) ResetSeen() {
	p.mu.Lock()
	p.seen = map[string]int{}
	p.mu.Unlock()
}

// Ref is repo:tag of docker.io through the proxy, as the webhook rewrites it.
func (p *proxyServer) Ref(repo, tag string) string {
	return p.Host + "/docker.io/" + repo + ":" + tag
}

// DigestRef is repo@digest of docker.io through the proxy.
func (p *proxyServer) DigestRef(repo string, d v1.Hash) string {
	return p.Host + "/docker.io/" + repo + "@" + d.String()
}

// Path is the proxy URL of a /v2/docker.io/<repo>/<rest> request.
func (p *proxyServer) Path(repo, rest string) string {
	return p.URL + "/v2/docker.io/" + repo + "/" + rest
}

// requireNoUpstreamGET fails unless the hub saw no manifest GET and no blob GET since its
// last Reset: everything came from the cache. HEADs are free on Docker Hub and allowed.
func requireNoUpstreamGET(t *testing.T, hub *fakehub.Hub) {
	t.Helper()
	c := hub.Counts()
	if c.TotalManifestGET() != 0 || c.TotalBlobGET() != 0 {
		t.Errorf("upstream saw %d manifest GETs %v and %d blob GETs %v; want none", c.TotalManifestGET(), c.ManifestGET, c.TotalBlobGET(), c.BlobGET)
	}
}

// requireUpstreamUntouched fails unless the hub saw no request at all since its last Reset.
func requireUpstreamUntouched(t *testing.T, hub *fakehub.Hub) {
	t.Helper()
	c := hub.Counts()
	total := c.TotalManifestGET() + c.TotalManifestHEAD() + c.TotalBlobGET() + c.TotalBlobHEAD() + c.Token + c.Challenged
	if total != 0 {
		t.Errorf("upstream saw requests it should not have: %+v", c)
	}
}

// clientTimeout bounds one run of a client program.
const clientTimeout = 3 * time.Minute

// run runs a client program and returns its standard output; the error carries its
// standard error.
func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	// Clients must not pick up credentials or registry settings of the machine.
	home := t.TempDir()
	env := append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+home, "REGISTRY_AUTH_FILE="+home+"/auth.json", "XDG_RUNTIME_DIR="+home)
	return runIn(t, "", env, bin, args...)
}

// runIn runs bin in dir with exactly env.
func runIn(t *testing.T, dir string, env []string, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func mustRun(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := run(t, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func crane(t *testing.T) string {
	t.Helper()
	return testenv.Env(t, "HUBCACHE_CRANE", `hack/tools.sh crane && eval "$(hack/tools.sh env)"`)
}

func skopeo(t *testing.T) string {
	t.Helper()
	return testenv.Binary(t, "skopeo", "apt-get install skopeo (or hack/tools.sh apt)")
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
