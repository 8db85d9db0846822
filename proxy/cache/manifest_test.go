package cache_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/upstream"
)

func TestATagIsServedFromTheCacheWithinTheTTLAndRevalidatedWithAHeadAfterIt(t *testing.T) {
	e := newEnv(t, cache.WithTagTTL(time.Minute))
	ctx := context.Background()
	d1 := e.up.tag(app.Path, "latest", "one")

	m, err := e.c.Manifest(ctx, app, "latest")
	if err != nil || m.Digest != d1 {
		t.Fatalf("first: %v %v", m.Digest, err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("media type %q", m.MediaType)
	}
	e.clock.Advance(30 * time.Second)
	if _, err := e.c.Manifest(ctx, app, "latest"); err != nil {
		t.Fatal(err)
	}
	if get, head := e.up.count("GET manifest"), e.up.count("HEAD manifest"); get != 1 || head != 0 {
		t.Fatalf("within the TTL: %d GETs, %d HEADs; want 1, 0", get, head)
	}

	e.clock.Advance(time.Minute)
	if m, err := e.c.Manifest(ctx, app, "latest"); err != nil || m.Digest != d1 {
		t.Fatalf("revalidated: %v %v", m.Digest, err)
	}
	if get, head := e.up.count("GET manifest"), e.up.count("HEAD manifest"); get != 1 || head != 1 {
		t.Fatalf("after the TTL, unchanged: %d GETs, %d HEADs; want 1, 1", get, head)
	}
	// The HEAD refreshed the tag: no second HEAD within the TTL.
	if _, err := e.c.Manifest(ctx, app, "latest"); err != nil {
		t.Fatal(err)
	}
	if head := e.up.count("HEAD manifest"); head != 1 {
		t.Fatalf("HEADs = %d after a refresh, want 1", head)
	}

	d2 := e.up.tag(app.Path, "latest", "two")
	e.clock.Advance(2 * time.Minute)
	if m, err := e.c.Manifest(ctx, app, "latest"); err != nil || m.Digest != d2 {
		t.Fatalf("moved tag: got %v %v, want %v", m.Digest, err, d2)
	}
	if get, head := e.up.count("GET manifest"), e.up.count("HEAD manifest"); get != 2 || head != 2 {
		t.Fatalf("moved tag: %d GETs, %d HEADs; want 2, 2", get, head)
	}
	// The old digest is still served by digest, without upstream.
	if m, err := e.c.Manifest(ctx, app, d1.String()); err != nil || m.Digest != d1 {
		t.Fatalf("old digest: %v", err)
	}
	if get := e.up.count("GET manifest"); get != 2 {
		t.Fatalf("old digest went upstream")
	}
}

func TestACachedTagIsServedStaleWhenUpstreamFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"upstream is unreachable", upstream.ErrUnavailable},
		{"upstream rate-limits", &upstream.RateLimitError{RetryAfter: time.Hour}},
		{"upstream refuses credentials", upstream.ErrUnauthorized},
		{"upstream lost the repository", upstream.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cache.WithTagTTL(time.Minute))
			ctx := context.Background()
			d := e.up.tag(app.Path, "latest", "one")
			if _, err := e.c.Manifest(ctx, app, "latest"); err != nil {
				t.Fatal(err)
			}
			e.up.set(func(f *fakeUpstream) { f.failWith = tc.err })
			e.clock.Advance(time.Hour)
			m, err := e.c.Manifest(ctx, app, "latest")
			if err != nil || m.Digest != d {
				t.Fatalf("stale serve: %v %v", m.Digest, err)
			}
			if n := e.metric(t, "hubcache_cache_stale_serves_total", nil); n != 1 {
				t.Fatalf("stale serves = %v, want 1", n)
			}
		})
	}
}

func TestUncachedManifestsMapUpstreamFailuresToClearErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want func(error) bool
	}{
		{"not found is manifest unknown", upstream.ErrNotFound, func(err error) bool { return errors.Is(err, cache.ErrManifestUnknown) }},
		{"unreachable is unavailable", upstream.ErrUnavailable, func(err error) bool { return errors.Is(err, cache.ErrUnavailable) }},
		{"refused is unauthorized", upstream.ErrUnauthorized, func(err error) bool { return errors.Is(err, cache.ErrUnauthorized) }},
		{"rate limited keeps Retry-After", &upstream.RateLimitError{RetryAfter: 7 * time.Second}, func(err error) bool {
			var tm *cache.TooManyRequestsError
			return errors.As(err, &tm) && tm.RetryAfter == 7*time.Second
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.up.set(func(f *fakeUpstream) { f.failWith = tc.err })
			_, err := e.c.Manifest(context.Background(), app, "latest")
			if !tc.want(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestACachedDigestIsServedWithoutUpstream(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := e.up.tag(app.Path, "v1", "one")
	if _, err := e.c.Manifest(ctx, app, d.String()); err != nil {
		t.Fatal(err)
	}
	e.up.set(func(f *fakeUpstream) { f.failWith = upstream.ErrUnavailable })
	e.up.resetCalls()
	for range 3 {
		if m, err := e.c.Manifest(ctx, app, d.String()); err != nil || m.Digest != d {
			t.Fatalf("cached digest: %v", err)
		}
	}
	if n := e.up.count("GET manifest") + e.up.count("HEAD manifest"); n != 0 {
		t.Fatalf("cached digest made %d upstream requests", n)
	}
}

func TestAManifestOfAnotherRepositoryNeedsUpstreamConfirmation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := e.up.tag(other.Path, "v1", "secret")
	if _, err := e.c.Manifest(ctx, other, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Manifest(ctx, app, d.String()); !errors.Is(err, cache.ErrManifestUnknown) {
		t.Fatalf("other repository's manifest by digest: %v, want ErrManifestUnknown", err)
	}
}

func TestOversizedAndCorruptManifestsAreRefusedAndNotStored(t *testing.T) {
	e := newEnv(t, cache.WithMaxManifestSize(64))
	ctx := context.Background()
	d := e.up.tag(app.Path, "big", strings.Repeat("x", 100))
	if _, err := e.c.Manifest(ctx, app, "big"); !errors.Is(err, cache.ErrTooLarge) {
		t.Fatalf("oversized: %v, want ErrTooLarge", err)
	}
	if _, err := e.blobs.Stat(ctx, d); err == nil {
		t.Fatal("oversized manifest was stored")
	}

	e2 := newEnv(t)
	d2 := e2.up.tag(app.Path, "v1", "one")
	e2.up.set(func(f *fakeUpstream) { f.manifests[d2] = []byte(`{"tampered":true}`) })
	if _, err := e2.c.Manifest(ctx, app, d2.String()); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("tampered manifest by digest: %v, want ErrUnavailable", err)
	}
	if _, err := e2.blobs.Stat(ctx, d2); err == nil {
		t.Fatal("tampered manifest was stored")
	}
}

func TestAnUnconfiguredRegistryIsUnknownWithoutAnyLookup(t *testing.T) {
	e := newEnv(t)
	ghcr := cache.Repo{Registry: "ghcr.io", Path: "x/y"}
	if _, err := e.c.Manifest(context.Background(), ghcr, "latest"); !errors.Is(err, cache.ErrNameUnknown) {
		t.Fatalf("manifest: %v", err)
	}
	if _, err := e.c.Blob(context.Background(), ghcr, digestOf([]byte("x"))); !errors.Is(err, cache.ErrNameUnknown) {
		t.Fatalf("blob: %v", err)
	}
	e.up.mu.Lock()
	defer e.up.mu.Unlock()
	if len(e.up.calls) != 0 {
		t.Fatalf("upstream calls: %v", e.up.calls)
	}
}

func TestConcurrentColdPullsOfATagMakeOneManifestGet(t *testing.T) {
	e := newEnv(t)
	e.up.tag(app.Path, "latest", "one")
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := e.c.Manifest(context.Background(), app, "latest")
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Requests that arrive after the first fill are hits, those during it share it.
	if n := e.up.count("GET manifest"); n != 1 {
		t.Fatalf("manifest GETs = %d, want 1", n)
	}
}

// countingStore counts Opens and holds the first one until release is closed.
type countingStore struct {
	blobstore.Store
	mu      sync.Mutex
	opens   int
	first   chan struct{} // closed at the first Open
	release chan struct{}
}

func (s *countingStore) Open(ctx context.Context, d v1.Hash, offset, length int64) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opens++
	n := s.opens
	s.mu.Unlock()
	if n == 1 {
		close(s.first)
		<-s.release
	}
	return s.Store.Open(ctx, d, offset, length)
}

func TestConcurrentReadsOfAStoredManifestShareOneRead(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := e.up.tag(app.Path, "v1", "one")
	if _, err := e.c.Manifest(ctx, app, d.String()); err != nil {
		t.Fatal(err)
	}
	// A second cache over the same stores holds no copy of the body: as after a restart.
	store := &countingStore{Store: e.blobs, first: make(chan struct{}), release: make(chan struct{})}
	c, err := cache.New(store, e.meta, e.up, cache.WithRegisterer(prometheus.NewRegistry()),
		cache.WithSpoolDir(t.TempDir()), cache.WithLogger(slog.New(slog.DiscardHandler)), cache.WithRegistries("docker.io"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	const readers = 20
	results := make([]cache.Manifest, readers)
	errs := make([]error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Go(func() { results[i], errs[i] = c.Manifest(ctx, app, d.String()) })
	}
	<-store.first
	// Without sharing, every reader opens the object too: give them a moment to, while the
	// first read is held. With sharing they wait for it and the moment passes (no flake
	// either way: the wait only ends early on the failure this test is after).
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		store.mu.Lock()
		n := store.opens
		store.mu.Unlock()
		if n == readers {
			break
		}
	}
	close(store.release)
	wg.Wait()
	for i := range readers {
		if errs[i] != nil || results[i].Digest != d {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		if &results[i].Body[0] != &results[0].Body[0] {
			t.Fatalf("reader %d got its own copy of the body", i)
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.opens != 1 {
		t.Fatalf("%d concurrent readers opened the stored manifest %d times, want once", readers, store.opens)
	}
}
