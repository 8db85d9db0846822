package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/pgtest"
	"github.com/hubcache/hubcache/test/s3server"
	"github.com/hubcache/hubcache/test/testenv"
)

func TestUpstreamFlagsAreParsedStrictly(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   map[string]string
		bad    bool
	}{
		{"the default", []string{"docker.io=https://registry-1.docker.io"}, map[string]string{"docker.io": "https://registry-1.docker.io"}, false},
		{"a Docker Hub alias is docker.io", []string{"index.docker.io=https://mirror.example"}, map[string]string{"docker.io": "https://mirror.example"}, false},
		{"several in one value, as in the environment", []string{"docker.io=https://a.example,ghcr.io=https://ghcr.io"}, map[string]string{"docker.io": "https://a.example", "ghcr.io": "https://ghcr.io"}, false},
		{"plain http when written so", []string{"localhost:5001=http://127.0.0.1:5001"}, map[string]string{"localhost:5001": "http://127.0.0.1:5001"}, false},
		{"no URL", []string{"docker.io"}, nil, true},
		{"not http", []string{"docker.io=ftp://x"}, nil, true},
		{"no host", []string{"docker.io=https://"}, nil, true},
		{"a registry twice", []string{"docker.io=https://a.example", "registry-1.docker.io=https://b.example"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUpstreams(tc.values)
			if tc.bad {
				if err == nil {
					t.Fatalf("accepted %v", tc.values)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for reg, u := range tc.want {
				if got[reg] == nil || got[reg].String() != u {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestTheProxyCommandHasEveryDocumentedFlag(t *testing.T) {
	cmd := newProxyCmd()
	for _, f := range []string{"listen", "metrics-listen", "data-dir", "upstream", "docker-config", "tag-ttl",
		"fill-timeout", "upstream-timeout", "max-manifest-size", "log-level", "shutdown-timeout",
		"blob-store", "metadata", "pg-max-conns", "pg-min-conns", "pg-max-conn-lifetime", "pg-max-conn-idle",
		"pg-health-check", "pg-connect-timeout", "s3-redirect", "s3-redirect-ttl", "max-size", "retention",
		"evict-interval", "cleanup-interval", "visibility-ttl", "allow-private"} {
		if cmd.Flags().Lookup(f) == nil {
			t.Errorf("no --%s", f)
		}
	}
	if got := cmd.Flags().Lookup("listen").DefValue; got != "127.0.0.1:5000" {
		t.Errorf("--listen defaults to %s", got)
	}
}

func TestStorageFlagsAreCheckedBeforeAnythingOpens(t *testing.T) {
	base := func() proxyFlags {
		f := proxyFlags{}
		f.retention, f.evictInterval, f.s3RedirectTTL = 168*time.Hour, time.Minute, time.Minute
		return f
	}
	for _, tc := range []struct {
		name string
		edit func(*proxyFlags)
		bad  bool
	}{
		{"the defaults are fine", func(*proxyFlags) {}, false},
		{"a size budget with units is fine", func(f *proxyFlags) { f.maxSize = "500GiB" }, false},
		{"a size budget that is not a size is refused", func(f *proxyFlags) { f.maxSize = "lots" }, true},
		{"a zero budget is refused (empty means no eviction)", func(f *proxyFlags) { f.maxSize = "0" }, true},
		{"a budget with no retention is refused", func(f *proxyFlags) { f.maxSize = "1GiB"; f.retention = 0 }, true},
		{"a redirect with S3 is fine", func(f *proxyFlags) { f.s3Redirect = true; f.blobStore = "s3://bucket?endpoint=http://127.0.0.1:9000" }, false},
		// Contradictions between options (a redirect without S3, more idle connections than
		// the pool holds) are refused by server.New: TestContradictoryOptionsAreRefusedByNew.
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base()
			tc.edit(&f)
			_, err := storageOptions(f)
			if tc.bad != (err != nil) {
				t.Fatalf("bad=%v, error %v", tc.bad, err)
			}
		})
	}
}

func TestTheMetadataDSNNeverReachesTheLog(t *testing.T) {
	if got := metadataKind("postgres://hubcache:s3cret@db:5432/hubcache"); got != "postgres" {
		t.Fatalf("logged %q", got)
	}
	if got := metadataKind(""); got != "sqlite (data dir)" {
		t.Fatalf("logged %q", got)
	}
}

// TestTheProxyCommandRunsOnS3AndPostgres runs `hubcache proxy` with the production storage
// flags (contract) against real MinIO and Postgres, and pulls through it.
func TestTheProxyCommandRunsOnS3AndPostgres(t *testing.T) {
	if testing.Short() && !testenv.InCI() {
		t.Skip("needs MinIO and Postgres (make test runs it)")
	}
	minio := s3server.Start(t, s3server.MinIO)
	for _, kv := range minio.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v) // credentials through the standard AWS chain
	}
	dsn := testSchema(t)
	hub := fakehub.New(t)
	hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 2, 100_000, true))
	listen, ops := freeAddr(t), freeAddr(t)

	root := newRootCmd()
	root.SetArgs([]string{"proxy", "--listen", listen, "--metrics-listen", ops, "--data-dir", t.TempDir(),
		"--upstream", "docker.io=" + hub.URL(), "--docker-config", t.TempDir(), "--log-level", "error",
		"--blob-store", minio.URL("cmd"), "--metadata", dsn, "--pg-max-conns", "4",
		"--max-size", "1GiB", "--retention", "1h", "--evict-interval", "1m", "--s3-redirect"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy exited with %v", err)
		}
	})

	var ready string
	for range 300 {
		resp, err := http.Get("http://" + ops + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ready = string(b); strings.Contains(ready, `"status":"ready"`) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(ready, `"status":"ready"`) {
		t.Fatalf("not ready: %q", ready)
	}
	for range 2 { // cold, then through the presigned redirects
		ref, err := name.ParseReference(listen+"/docker.io/library/app:v1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref)
		if err != nil {
			t.Fatal(err)
		}
		fakehub.ReadAll(t, img)
	}
	if n := hub.Counts().TotalBlobGET(); n != 3 {
		t.Errorf("upstream blob GETs = %d, want 3 (config and two layers, once)", n)
	}
}

// testSchema returns a DSN selecting a fresh schema on the test Postgres, dropped at the end.
func testSchema(t *testing.T) string {
	t.Helper()
	dsn, _ := pgtest.Schema(t, "hubcache_cmd_test_")
	return dsn
}

func TestAllowPrivatePatternsAreSplitOnCommasLikeTheirEnvironmentVariable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   []string
	}{
		{"none is none", nil, nil},
		{"repeated flags are kept in order", []string{"docker.io/acme/*", "docker.io/b/c"}, []string{"docker.io/acme/*", "docker.io/b/c"}},
		{"one comma-separated value is split and trimmed", []string{"docker.io/acme/*, docker.io/b/c,"}, []string{"docker.io/acme/*", "docker.io/b/c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := allowPatterns(tc.values); !slices.Equal(got, tc.want) {
				t.Errorf("allowPatterns(%q) = %q, want %q", tc.values, got, tc.want)
			}
		})
	}
}
