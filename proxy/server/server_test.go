package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

// start runs a proxy in front of hub and returns its host ("127.0.0.1:PORT").
func start(t *testing.T, hub *fakehub.Hub, opts ...server.Option) (*server.Server, string) {
	t.Helper()
	u, err := url.Parse(hub.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]server.Option{
		server.WithLogger(slog.New(slog.DiscardHandler)),
		server.WithDockerConfigDir(t.TempDir()),
	}, opts...)
	srv, err := server.New(context.Background(), t.TempDir(), map[string]*url.URL{"docker.io": u}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return srv, strings.TrimPrefix(ts.URL, "http://")
}

func pullAll(t *testing.T, ref string) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		t.Fatalf("config of %s: %v", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer of %s: %v", ref, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("layer of %s: %v", ref, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAPullThroughTheProxyGetsUpstreamsDigestAndTheSecondPullStaysLocal(t *testing.T) {
	hub := fakehub.New(t)
	want := hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 2, 100_000, false))
	_, host := start(t, hub)

	if got := pullAll(t, host+"/docker.io/library/app:v1"); got != want {
		t.Fatalf("digest through the proxy = %s, upstream has %s", got, want)
	}
	first := hub.Counts()
	if first.TotalManifestGET() == 0 || first.TotalBlobGET() != 3 {
		t.Fatalf("first pull: manifest GETs %d, blob GETs %d; want >0 and 3 (config + 2 layers)",
			first.TotalManifestGET(), first.TotalBlobGET())
	}
	hub.Reset()
	if got := pullAll(t, host+"/docker.io/library/app:v1"); got != want {
		t.Fatalf("second pull digest = %s, want %s", got, want)
	}
	if c := hub.Counts(); c.TotalManifestGET() != 0 || c.TotalBlobGET() != 0 {
		t.Fatalf("second pull went upstream: %d manifest GETs, %d blob GETs", c.TotalManifestGET(), c.TotalBlobGET())
	}
}

func TestTheOpsHandlerServesMetricsHealthAndReadiness(t *testing.T) {
	hub := fakehub.New(t)
	srv, _ := start(t, hub)
	ops := httptest.NewServer(srv.OpsHandler())
	t.Cleanup(ops.Close)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(ops.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path == "/metrics" && !strings.Contains(string(body), "hubcache_cache_hits_total") {
			t.Fatalf("/metrics lacks the cache metrics:\n%s", body)
		}
	}
}
