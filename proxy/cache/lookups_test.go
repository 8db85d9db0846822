package cache_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
)

// countingMeta counts the reads of the warm manifest path.
type countingMeta struct {
	metadata.Store
	getTag, getManifest atomic.Int64
}

func (m *countingMeta) GetTag(ctx context.Context, repo, tag string) (metadata.Tag, error) {
	m.getTag.Add(1)
	return m.Store.GetTag(ctx, repo, tag)
}

func (m *countingMeta) GetManifest(ctx context.Context, repo string, d v1.Hash) (metadata.Manifest, error) {
	m.getManifest.Add(1)
	return m.Store.GetManifest(ctx, repo, d)
}

func newCountingCache(t *testing.T, opts ...cache.Option) (*cache.Cache, *countingMeta, *fakeUpstream) {
	t.Helper()
	dir := t.TempDir()
	blobs, err := file.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.New(t.Context(), filepath.Join(dir, "meta.db"), sqlite.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	meta := &countingMeta{Store: db}
	up := newFakeUpstream()
	c, err := cache.New(blobs, meta, up, append([]cache.Option{
		cache.WithSpoolDir(filepath.Join(dir, "spool")),
		cache.WithLogger(slog.New(slog.DiscardHandler)),
		cache.WithTagTTL(time.Hour),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, meta, up
}

func TestAWarmTagAndDigestAreAnsweredFromRememberedRows(t *testing.T) {
	c, meta, up := newCountingCache(t, cache.WithLookupTTL(time.Hour))
	d := up.tag(app.Path, "latest", "one")
	if _, err := c.Manifest(t.Context(), app, "latest"); err != nil {
		t.Fatal(err)
	}
	meta.getTag.Store(0)
	meta.getManifest.Store(0)
	for range 100 {
		for _, ref := range []string{"latest", d.String()} {
			if m, err := c.Manifest(t.Context(), app, ref); err != nil || m.Digest != d {
				t.Fatalf("%s: %v %v", ref, m.Digest, err)
			}
		}
	}
	// The cold pull recorded the tag here; the first warm request reads the manifest row once.
	if tags, manifests := meta.getTag.Load(), meta.getManifest.Load(); tags != 0 || manifests != 1 {
		t.Errorf("200 warm requests read %d tags and %d manifest rows from the store, want 0 and 1", tags, manifests)
	}
	if n := up.count("GET manifest") + up.count("HEAD manifest"); n != 1 {
		t.Errorf("upstream saw %d manifest requests, want 1", n)
	}
}

func TestWithoutRememberedRowsATagMovedByAnotherReplicaIsSeenAtOnce(t *testing.T) {
	c, meta, up := newCountingCache(t, cache.WithLookupTTL(0))
	d1 := up.tag(app.Path, "latest", "one")
	d2 := up.tag(app.Path, "other", "two")
	for _, tag := range []string{"other", "latest"} {
		if _, err := c.Manifest(t.Context(), app, tag); err != nil {
			t.Fatal(err)
		}
	}
	// Another replica revalidated "latest" and found it moved to d2.
	if err := meta.PutTag(t.Context(), app.String(), "latest", metadata.Tag{Digest: d2, CheckedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Manifest(t.Context(), app, "latest")
	if err != nil || m.Digest != d2 {
		t.Fatalf("got %v (%v), want %v, not the old %v", m.Digest, err, d2, d1)
	}
	if n := meta.getTag.Load(); n < 2 {
		t.Errorf("GetTag ran %d times, want one per request", n)
	}
}
