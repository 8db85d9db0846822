package fillcoord_test

import (
	"context"
	"log/slog"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/fillcoord"
	"github.com/hubcache/hubcache/proxy/metadata/postgres"
	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/hubcache/hubcache/test/fakehub"
)

var app = cache.Repo{Registry: "docker.io", Path: "library/app"}

// manifestReplica is a cache over the shared schema and blob directory whose upstream (the
// hub) is coordinated by its own fill coordinator, as a proxy replica's is.
func manifestReplica(t *testing.T, dsn, blobDir, name string, hub *fakehub.Hub) *cache.Cache {
	t.Helper()
	ctx := t.Context()
	blobs, err := file.New(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := postgres.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Close() })
	u, err := url.Parse(hub.URL())
	if err != nil {
		t.Fatal(err)
	}
	client, err := upstream.New(map[string]*url.URL{"docker.io": u}, upstream.WithDockerConfigDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	coord := newCoord(t, dsn, name, time.Second)
	c, err := cache.New(blobs, meta, fillcoord.NewUpstream(client, coord, "s3cret", blobs),
		cache.WithRegisterer(prometheus.NewRegistry()),
		cache.WithSpoolDir(filepath.Join(t.TempDir(), "spool")),
		cache.WithLogger(slog.New(slog.DiscardHandler)),
		cache.WithRegistries("docker.io"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestAColdManifestIsFetchedFromUpstreamOnceAcrossReplicas(t *testing.T) {
	cases := []struct {
		name string
		ref  func(tag string, d string) string
		key  func(tag string, d string) string
	}{
		{name: "by tag", ref: func(tag, _ string) string { return tag }, key: func(tag, _ string) string { return "library/app:" + tag }},
		{name: "by digest", ref: func(_, d string) string { return d }, key: func(_, d string) string { return "library/app@" + d }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn := freshSchema(t)
			hub := fakehub.New(t)
			md := hub.Push(t, "library/app", "latest", fakehub.RandomImage(t, 1, 1000, false))
			d := md.String()
			// A slow upstream: every replica asks while the first fetch is still running.
			hub.SetDigestMode(md, fakehub.Slow(300*time.Millisecond, 0))
			blobDir := t.TempDir()
			replicas := []*cache.Cache{
				manifestReplica(t, dsn, blobDir, "ra", hub),
				manifestReplica(t, dsn, blobDir, "rb", hub),
			}
			ref := tc.ref("latest", d)
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Go(func() {
					m, err := replicas[i%2].Manifest(t.Context(), app, ref)
					if err != nil {
						t.Errorf("Manifest(%s): %v", ref, err)
						return
					}
					if m.Digest.String() != d {
						t.Errorf("Manifest(%s) = %s, want %s", ref, m.Digest, d)
					}
				})
			}
			wg.Wait()
			if got := hub.Counts().ManifestGET[tc.key("latest", d)]; got != 1 {
				t.Errorf("upstream manifest GETs for %s = %d, want 1 (all: %v)", ref, got, hub.Counts().ManifestGET)
			}
		})
	}
}

func TestAReplicaTakesAManifestFetchOverWhenTheHolderDies(t *testing.T) {
	dsn := freshSchema(t)
	hub := fakehub.New(t)
	d := hub.Push(t, "library/app", "latest", fakehub.RandomImage(t, 1, 1000, false))
	c := manifestReplica(t, dsn, t.TempDir(), "alive", hub)
	// A replica took the lease and died before storing anything: nobody renews or releases
	// it, and it expires in a second.
	db, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(t.Context(), `INSERT INTO fill_leases (digest, holder, addr, expires_at)
		VALUES ('manifest:docker.io/library/app:latest', 'dead', 'dead:5000', now() + interval '1 second')`); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	m, err := c.Manifest(ctx, app, "latest")
	if err != nil {
		t.Fatalf("Manifest: %v", err)
	}
	if m.Digest != d {
		t.Errorf("Manifest = %s, want %s", m.Digest, d)
	}
	if got := hub.Counts().ManifestGET["library/app:latest"]; got != 1 {
		t.Errorf("upstream manifest GETs = %d, want 1", got)
	}
}
