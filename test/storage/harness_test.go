package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/jackc/pgx/v5"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/s3server"
	"github.com/hubcache/hubcache/test/testenv"
)

// proxy is one in-process proxy replica built by server.New, as `hubcache proxy` builds it,
// served on 127.0.0.1, counting the 5xx answers it gave.
type proxy struct {
	srv  *server.Server
	http *httptest.Server
	ops  *httptest.Server
	host string
	logs *syncBuffer

	mu      sync.Mutex
	fivexx  []string
	answers int
}

// startProxy builds a proxy in front of hub with the given storage options.
func startProxy(t *testing.T, hub *fakehub.Hub, opts ...server.Option) *proxy {
	t.Helper()
	u, err := url.Parse(hub.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{logs: &syncBuffer{}}
	all := append([]server.Option{
		server.WithTagTTL(0), // every tag pull asks upstream: the outage paths run each time
		server.WithDockerConfigDir(t.TempDir()),
		server.WithUpstreamTimeout(10 * time.Second),
		server.WithHealthInterval(200 * time.Millisecond),
		server.WithLogger(slog.New(slog.NewTextHandler(p.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}, opts...)
	p.srv, err = server.New(t.Context(), t.TempDir(), map[string]*url.URL{"docker.io": u}, all...)
	if err != nil {
		t.Fatalf("building the proxy: %v", err)
	}
	h := p.srv.Handler()
	p.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			p.mu.Lock()
			p.answers++
			if rec.status >= 500 {
				p.fivexx = append(p.fivexx, fmt.Sprintf("%s %s: %d", r.Method, r.URL.Path, rec.status))
			}
			p.mu.Unlock()
		}()
		h.ServeHTTP(rec, r)
	}))
	p.ops = httptest.NewServer(p.srv.OpsHandler())
	p.host = strings.TrimPrefix(p.http.URL, "http://")
	t.Cleanup(func() {
		p.http.Close()
		p.ops.Close()
		if err := p.srv.Close(); err != nil {
			t.Errorf("closing the proxy: %v", err)
		}
		if t.Failed() {
			t.Logf("proxy log:\n%s", p.logs.Tail(60))
		}
	})
	return p
}

// serverErrors returns the 5xx answers so far and forgets them.
func (p *proxy) serverErrors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.fivexx
	p.fivexx = nil
	return out
}

// ops fetches a path of the ops handler.
func (p *proxy) opsGet(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(p.ops.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// pull pulls ref ("library/app:v1" or "library/app@sha256:…") through the proxy with
// go-containerregistry, as a client would, and checks every byte against its digest. A
// multi-arch index is pulled whole. No retries: a failed request fails the pull.
// pull pulls ref through the proxy, checks every digest, then waits until the proxy's fills have
// ended: a client gets its last byte as soon as the digest checks out, before the blob is stored
// and recorded, and the tests look at the stores next.
func (p *proxy) pull(ref string) error {
	if err := p.fetch(ref); err != nil {
		return err
	}
	return p.waitFills()
}

// waitFills waits (at most a minute) until hubcache_blob_fills_in_flight is 0.
func (p *proxy) waitFills() error {
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(p.ops.URL + "/metrics")
		if err != nil {
			return fmt.Errorf("waiting for fills: %w", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("waiting for fills: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "hubcache_blob_fills_in_flight ") {
				last = line
				if line == "hubcache_blob_fills_in_flight 0" {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("fills still in progress after a minute (%q)", last)
}

// fetch pulls ref through the proxy and checks every digest.
func (p *proxy) fetch(ref string) error {
	r, err := name.ParseReference(p.host+"/docker.io/"+ref, name.Insecure)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := []remote.Option{remote.WithContext(ctx), remote.WithRetryStatusCodes(), remote.WithRetryBackoff(noRetry)}
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				return fmt.Errorf("pull %s: child %s: %w", ref, m.Digest, err)
			}
			if err := checkImage(img); err != nil {
				return fmt.Errorf("pull %s: child %s: %w", ref, m.Digest, err)
			}
		}
		return nil
	}
	img, err := desc.Image()
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := checkImage(img); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// checkImage reads the config and every layer of img and checks each against its digest.
func checkImage(img v1.Image) error {
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if got := sha(raw); got != cfgName {
		return fmt.Errorf("config has digest %s, want %s", got, cfgName)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		want, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer %s: %w", want, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", want, err)
		}
		if got := (v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}); got != want {
			return fmt.Errorf("layer has digest %s, want %s", got, want)
		}
	}
	return nil
}

func sha(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// noRetry makes go-containerregistry try each request once: a pull that needed a retry
// would hide the failure the tests look for.
var noRetry = remote.Backoff{Steps: 1, Duration: time.Millisecond, Factor: 1}

// image is a test image on the hub.
type image struct {
	ref     string // "library/app:v1"
	digest  v1.Hash
	layers  []v1.Hash // config and layers of an image; every child's of an index
	repo    string
	tag     string
	byDigst string // "library/app@sha256:…"
}

// pushImage pushes a random image of n layers of size bytes to repo:tag.
func pushImage(t *testing.T, hub *fakehub.Hub, repo, tag string, n int, size int64) image {
	t.Helper()
	img := fakehub.RandomImage(t, n, size, true)
	hub.Push(t, repo, tag, img)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	blobs := []v1.Hash{cfg}
	for _, l := range ls {
		ld, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, ld)
	}
	return image{ref: repo + ":" + tag, digest: d, layers: blobs, repo: repo, tag: tag, byDigst: repo + "@" + d.String()}
}

// baseDSN is the machine's shared Postgres (HUBCACHE_TEST_POSTGRES overrides).
func baseDSN() string {
	if v := os.Getenv("HUBCACHE_TEST_POSTGRES"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// freshSchema creates a schema with a random name in the database of dsn, drops it when the
// test ends, and returns a DSN whose search_path selects it.
func freshSchema(t *testing.T, dsn string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		testenv.Missing(t, "Postgres", "apt-get install postgresql && pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "hubcache_storage_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("not a postgres:// URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// privatePostgres is a Postgres cluster of the test's own, which it may stop and restart
// without disturbing the machine's shared server.
type privatePostgres struct {
	bin    string
	dir    string
	port   int
	runner []string // runs a command as user postgres when the test runs as root
}

// startPrivatePostgres runs initdb and starts a cluster on 127.0.0.1:<free port>; it is
// stopped when the test ends. initdb refuses root, so the cluster runs as user postgres.
func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		testenv.Missing(t, "Postgres server binaries", "apt-get install postgresql")
	}
	pg := &privatePostgres{bin: filepath.Dir(matches[len(matches)-1])}
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("runuser"); err != nil {
			testenv.Missing(t, "runuser (to run Postgres as user postgres)", "apt-get install util-linux")
		}
		pg.runner = []string{"runuser", "-u", "postgres", "--"}
	}
	// Not t.TempDir(): user postgres must reach the directory.
	dir, err := os.MkdirTemp("", "hubcache-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pg.dir = filepath.Join(dir, "data")
	if err := os.Mkdir(pg.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "-R", "postgres:postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v\n%s", err, out)
		}
	}
	pg.port = freePort(t)
	if out, err := pg.command(filepath.Join(pg.bin, "initdb"), "-D", pg.dir, "-A", "trust", "-U", "postgres", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	pg.Start(t)
	t.Cleanup(func() { pg.Stop(t) })
	return pg
}

func (pg *privatePostgres) command(args ...string) *exec.Cmd {
	all := append(append([]string{}, pg.runner...), args...)
	return exec.Command(all[0], all[1:]...)
}

// DSN names the cluster's postgres database.
func (pg *privatePostgres) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

// Start starts the cluster (again) and waits until it accepts connections.
func (pg *privatePostgres) Start(t *testing.T) {
	t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", pg.port, pg.dir)
	out, err := pg.command(filepath.Join(pg.bin, "pg_ctl"), "-D", pg.dir, "-o", opts, "-w", "-t", "60",
		"-l", filepath.Join(pg.dir, "server.log"), "start").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctl start: %v\n%s", err, out)
	}
}

// Stop stops the cluster at once (fast mode: sessions are cut, as in an outage).
func (pg *privatePostgres) Stop(t *testing.T) {
	t.Helper()
	out, err := pg.command(filepath.Join(pg.bin, "pg_ctl"), "-D", pg.dir, "-m", "fast", "-w", "stop").CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("Is server running?")) {
		t.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Crash stops the cluster as a crash would (immediate mode: no shutdown checkpoint; the next
// Start runs crash recovery).
func (pg *privatePostgres) Crash(t *testing.T) {
	t.Helper()
	out, err := pg.command(filepath.Join(pg.bin, "pg_ctl"), "-D", pg.dir, "-m", "immediate", "-w", "stop").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctl stop -m immediate: %v\n%s", err, out)
	}
}

// startMinIO starts a MinIO server for the test and exposes its credentials through the
// standard AWS environment, as a deployment would.
func startMinIO(t *testing.T) *s3server.Server {
	t.Helper()
	s := s3server.Start(t, s3server.MinIO)
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	return testenv.FreePort(t)
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

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
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
