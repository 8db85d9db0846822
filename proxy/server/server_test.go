package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	fakehub.ReadAll(t, img)
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
	hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 1, 1000, true))
	srv, host := start(t, hub)
	pullAll(t, host+"/docker.io/library/app:v1")
	ops := httptest.NewServer(srv.OpsHandler())
	t.Cleanup(ops.Close)
	fetch := func(path string) string {
		resp, err := http.Get(ops.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	fetch("/healthz")
	if body := fetch("/readyz"); !strings.Contains(body, `"blob_store":"ok"`) || !strings.Contains(body, `"metadata":"ok"`) {
		t.Fatalf("/readyz lacks the checks: %s", body)
	}
	for _, want := range []string{
		`hubcache_cache_misses_total{kind="blob"} 2`,
		`hubcache_upstream_ratelimit_remaining{registry="docker.io"}`,
		`hubcache_http_requests_total{code="200",method="GET",route="blob"} 2`,
	} {
		// A request is counted when its handler returns, which may be just after the
		// client read the last byte: look again until it shows up.
		var body string
		for range 200 {
			if body = fetch("/metrics"); strings.Contains(body, want) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %s:\n%s", want, body)
		}
	}
}

func get(t *testing.T, url string) (*http.Response, []byte, error) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestCorruptUpstreamBlobsFailTheClientAndAreNotCached(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 1, 300_000, false)
	hub.Push(t, "library/app", "v1", img)
	d := fakehub.FirstLayer(t, img)
	_, host := start(t, hub)
	url := "http://" + host + "/v2/docker.io/library/app/blobs/" + d.String()

	hub.SetMode(fakehub.Corrupt())
	// Either the fill failed before the response started (an error status) or during it
	// (a broken body): never a complete 200.
	resp, body, err := get(t, url)
	if err == nil && resp.StatusCode == http.StatusOK {
		t.Fatalf("corrupt blob: client got a complete 200 response of %d bytes", len(body))
	}
	hub.SetMode(fakehub.Normal())
	resp, body, err = get(t, url)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after recovery: %v %d", err, resp.StatusCode)
	}
	if got := sha256Hex(body); got != d.Hex {
		t.Fatalf("after recovery: digest %s, want %s", got, d.Hex)
	}
	if n := hub.Counts().BlobGET[d.String()]; n != 2 {
		t.Fatalf("upstream GETs of the blob = %d, want 2 (nothing cached from the corrupt one)", n)
	}
}

func TestWhenTheHubIsDownCachedTagsStillPullAndMissesAre503(t *testing.T) {
	hub := fakehub.New(t)
	want := hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 1, 1000, true))
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	_, host := start(t, hub, server.WithTagTTL(time.Minute), server.WithClock(clock))
	pullAll(t, host+"/docker.io/library/app:v1")

	hub.SetMode(fakehub.Down())
	offset.Store(int64(time.Hour))
	if got := pullAll(t, host+"/docker.io/library/app:v1"); got != want {
		t.Fatalf("stale pull: %s, want %s", got, want)
	}
	resp, body, _ := get(t, "http://"+host+"/v2/docker.io/library/other/manifests/v1")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("uncached manifest with the hub down: %d %s", resp.StatusCode, body)
	}
}

func TestAnUpstream429OnAMissIs429WithRetryAfter(t *testing.T) {
	hub := fakehub.New(t)
	hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 1, 1000, true))
	_, host := start(t, hub)
	hub.SetMode(fakehub.RateLimited(2 * time.Minute))
	resp, body, _ := get(t, "http://"+host+"/v2/docker.io/library/app/manifests/v1")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "120" {
		t.Fatalf("%d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

func TestAnUnconfiguredRegistryIsNotFetched(t *testing.T) {
	hub := fakehub.New(t)
	_, host := start(t, hub)
	resp, body, _ := get(t, "http://"+host+"/v2/"+hub.Host()+"/library/app/manifests/v1")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "NAME_UNKNOWN") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if c := hub.Counts(); c.TotalManifestGET()+c.TotalManifestHEAD()+c.Token != 0 {
		t.Fatalf("the hub was contacted: %+v", c)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestAMultiArchIndexAndEachPlatformAreCachedAsPulled(t *testing.T) {
	hub := fakehub.New(t)
	want := hub.PushIndex(t, "library/multi", "v1", fakehub.RandomIndex(t, []string{"linux/amd64", "linux/arm64"}, 1, 1000, true))
	_, host := start(t, hub)
	pullIndex := func() {
		r, err := name.ParseReference(host+"/docker.io/library/multi:v1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(r)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := idx.Digest(); d != want {
			t.Fatalf("index digest %s, want %s", d, want)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, desc := range im.Manifests {
			if got := pullAll(t, host+"/docker.io/library/multi@"+desc.Digest.String()); got != desc.Digest {
				t.Fatalf("child %s pulled as %s", desc.Digest, got)
			}
		}
	}
	pullIndex()
	if n := hub.Counts().TotalManifestGET(); n != 3 {
		t.Fatalf("first pull: %d manifest GETs, want 3 (index + 2 platforms)", n)
	}
	hub.Reset()
	pullIndex()
	if c := hub.Counts(); c.TotalManifestGET() != 0 || c.TotalBlobGET() != 0 {
		t.Fatalf("second pull went upstream: %+v", c)
	}
}

func TestTheMirrorFormPullsFromDockerHub(t *testing.T) {
	hub := fakehub.New(t)
	want := hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 1, 1000, false))
	_, host := start(t, hub)
	// pkg/name reads "host/library/app" as repository library/app on host: the mirror form.
	if got := pullAll(t, host+"/library/app:v1"); got != want {
		t.Fatalf("mirror pull %s, want %s", got, want)
	}
}
