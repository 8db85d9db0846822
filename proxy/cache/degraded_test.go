package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
)

var errDown = errors.New("connection refused")

// flakyMeta is the real SQLite store with an off switch: while down, every call fails the
// way a stopped database does.
type flakyMeta struct {
	*sqlite.Store
	down  atomic.Bool
	calls atomic.Int64 // calls made while down
}

func (m *flakyMeta) fail() error {
	if m.down.Load() {
		m.calls.Add(1)
		return errDown
	}
	return nil
}

func (m *flakyMeta) GetTag(ctx context.Context, repo, tag string) (metadata.Tag, error) {
	if err := m.fail(); err != nil {
		return metadata.Tag{}, err
	}
	return m.Store.GetTag(ctx, repo, tag)
}

func (m *flakyMeta) PutTag(ctx context.Context, repo, tag string, t metadata.Tag) error {
	if err := m.fail(); err != nil {
		return err
	}
	return m.Store.PutTag(ctx, repo, tag, t)
}

func (m *flakyMeta) GetManifest(ctx context.Context, repo string, d v1.Hash) (metadata.Manifest, error) {
	if err := m.fail(); err != nil {
		return metadata.Manifest{}, err
	}
	return m.Store.GetManifest(ctx, repo, d)
}

func (m *flakyMeta) PutManifest(ctx context.Context, repo string, x metadata.Manifest) error {
	if err := m.fail(); err != nil {
		return err
	}
	return m.Store.PutManifest(ctx, repo, x)
}

func (m *flakyMeta) GetBlob(ctx context.Context, repo string, d v1.Hash) (metadata.Blob, error) {
	if err := m.fail(); err != nil {
		return metadata.Blob{}, err
	}
	return m.Store.GetBlob(ctx, repo, d)
}

func (m *flakyMeta) PutBlob(ctx context.Context, repo string, b metadata.Blob) error {
	if err := m.fail(); err != nil {
		return err
	}
	return m.Store.PutBlob(ctx, repo, b)
}

func (m *flakyMeta) Forget(ctx context.Context, d v1.Hash) error {
	if err := m.fail(); err != nil {
		return err
	}
	return m.Store.Forget(ctx, d)
}

func (m *flakyMeta) Touch(ctx context.Context, d v1.Hash, at time.Time) error {
	if err := m.fail(); err != nil {
		return err
	}
	return m.Store.Touch(ctx, d, at)
}

func (m *flakyMeta) SetReferences(ctx context.Context, d v1.Hash, children []v1.Hash) error {
	if err := m.fail(); err != nil {
		return err
	}
	return m.Store.SetReferences(ctx, d, children)
}

// flakyBlobs is the real file store with an off switch.
type flakyBlobs struct {
	*file.Store
	down atomic.Bool
	// statsLeft, when statsLimited, is how many more Stat calls succeed: the store dies
	// between two steps of one request.
	statsLimited atomic.Bool
	statsLeft    atomic.Int64
}

func (b *flakyBlobs) Stat(ctx context.Context, d v1.Hash) (int64, error) {
	if b.down.Load() || (b.statsLimited.Load() && b.statsLeft.Add(-1) < 0) {
		return 0, errDown
	}
	return b.Store.Stat(ctx, d)
}

func (b *flakyBlobs) Open(ctx context.Context, d v1.Hash, offset, length int64) (io.ReadCloser, error) {
	if b.down.Load() {
		return nil, errDown
	}
	return b.Store.Open(ctx, d, offset, length)
}

func (b *flakyBlobs) Create(ctx context.Context, d v1.Hash) (blobstore.Writer, error) {
	if b.down.Load() {
		return nil, errDown
	}
	return b.Store.Create(ctx, d)
}

type flakyEnv struct {
	c     *cache.Cache
	up    *fakeUpstream
	blobs *flakyBlobs
	meta  *flakyMeta
	clock *clock
	reg   *prometheus.Registry
}

func newFlakyEnv(t *testing.T, opts ...cache.Option) *flakyEnv {
	t.Helper()
	dir := t.TempDir()
	fs, err := file.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.New(context.Background(), filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	// The clock runs ahead of the wall clock the stores stamp puts with, so touches move
	// last_access forward.
	e := &flakyEnv{up: newFakeUpstream(), blobs: &flakyBlobs{Store: fs}, meta: &flakyMeta{Store: db},
		clock: &clock{now: time.Now().Add(time.Hour).Truncate(time.Millisecond)}, reg: prometheus.NewRegistry()}
	c, err := cache.New(e.blobs, e.meta, e.up, append([]cache.Option{
		cache.WithClock(e.clock.Now),
		cache.WithRegisterer(e.reg),
		cache.WithSpoolDir(filepath.Join(dir, "spool")),
		cache.WithLogger(slog.New(slog.DiscardHandler)),
		cache.WithRegistries("docker.io"),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e.c = c
	return e
}

func (e *flakyEnv) read(t *testing.T, repo cache.Repo, d v1.Hash) ([]byte, error) {
	t.Helper()
	b, err := e.c.Blob(context.Background(), repo, d)
	if err != nil {
		return nil, err
	}
	return readBlob(context.Background(), b, 0, -1)
}

func (e *flakyEnv) waitFills(t *testing.T) {
	t.Helper()
	(&env{reg: e.reg}).waitFills(t)
}

// imageManifest adds an image manifest referencing config and layers to repo:tag upstream.
func (f *fakeUpstream) imageManifest(repo, tag string, config v1.Hash, layers ...v1.Hash) v1.Hash {
	var ls []string
	for _, l := range layers {
		ls = append(ls, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":1}`, l))
	}
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":1},"layers":[%s]}`,
		config, bytes.Join(func() [][]byte {
			var out [][]byte
			for _, l := range ls {
				out = append(out, []byte(l))
			}
			return out
		}(), []byte(",")))
	d := digestOf(body)
	f.set(func(f *fakeUpstream) {
		f.manifests[d] = body
		f.mediaType[d] = "application/vnd.oci.image.manifest.v1+json"
		f.tags[repo+":"+tag] = d
		f.link(repo, d)
	})
	return d
}

func TestABlobEvictedBetweenLookupAndReadIsFilledAgainNotAnError(t *testing.T) {
	e := newFlakyEnv(t)
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 5000)
	if _, err := e.read(t, app, d); err != nil {
		t.Fatal(err)
	}
	e.waitFills(t)
	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	// The evictor (or a lost bucket) removes the object after the lookup found it.
	if err := e.blobs.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err := readBlob(ctx, b, 0, -1)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read after the object vanished: %d bytes, %v", len(got), err)
	}
	if n := e.up.count("GET blob"); n != 2 {
		t.Fatalf("upstream blob GETs = %d, want 2 (the refill)", n)
	}
}

func TestHitsAreTouchedAtMostOncePerInterval(t *testing.T) {
	e := newFlakyEnv(t, cache.WithTouchInterval(time.Minute))
	ctx := context.Background()
	d, _ := e.up.addBlob(t, app.Path, 100)
	if _, err := e.read(t, app, d); err != nil {
		t.Fatal(err)
	}
	e.waitFills(t)
	for _, step := range []struct {
		name    string
		advance time.Duration
		touched bool
	}{
		{"the first hit is recorded", 0, true},
		{"a hit 10s later is not", 10 * time.Second, false},
		{"a hit a minute after the recorded one is", 50 * time.Second, true},
	} {
		e.clock.Advance(step.advance)
		before, err := e.meta.LastAccess(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.read(t, app, d); err != nil {
			t.Fatal(err)
		}
		after, err := e.meta.LastAccess(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if touched := after.After(before); touched != step.touched {
			t.Errorf("%s: touched=%v (last access %s → %s)", step.name, touched, before, after)
		}
	}
}

func TestAStoredManifestProtectsWhatItReferences(t *testing.T) {
	e := newFlakyEnv(t)
	ctx := context.Background()
	cfg, _ := e.up.addBlob(t, app.Path, 100)
	layer, _ := e.up.addBlob(t, app.Path, 200)
	loose, _ := e.up.addBlob(t, app.Path, 300)
	for _, d := range []v1.Hash{cfg, layer, loose} {
		if _, err := e.read(t, app, d); err != nil {
			t.Fatal(err)
		}
	}
	e.waitFills(t)
	md := e.up.imageManifest(app.Path, "v1", cfg, layer)
	if _, err := e.c.Manifest(ctx, app, "v1"); err != nil {
		t.Fatal(err)
	}
	// Everything accessed within the last day is protected, with what it references.
	cands, err := e.meta.EvictionCandidates(ctx, time.Now().Add(-24*time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	var listed []v1.Hash
	for _, c := range cands {
		listed = append(listed, c.Digest)
	}
	if slices.Contains(listed, cfg) || slices.Contains(listed, layer) || slices.Contains(listed, md) {
		t.Fatalf("a referenced blob or the recent manifest is an eviction candidate: %v", listed)
	}
	if !slices.Contains(listed, loose) {
		t.Fatalf("the unreferenced blob is not a candidate: %v", listed)
	}
}

func TestWithTheMetadataStoreDownStoredBlobsAreServedOnlyWhenUpstreamConfirmsTheRepository(t *testing.T) {
	e := newFlakyEnv(t)
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 5000)
	md := e.up.tag(app.Path, "v1", "one")
	if _, err := e.read(t, app, d); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Manifest(ctx, app, "v1"); err != nil {
		t.Fatal(err)
	}
	e.waitFills(t)
	e.up.resetCalls()
	e.meta.down.Store(true)

	got, err := e.read(t, app, d)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cached blob during the outage: %v", err)
	}
	if e.up.count("GET blob") != 0 || e.up.count("HEAD blob") != 1 {
		t.Fatalf("upstream calls %v; want one HEAD blob (the confirmation) and no GET", e.up.calls)
	}
	if _, err := e.read(t, other, d); !errors.Is(err, cache.ErrBlobUnknown) {
		t.Fatalf("the blob under a repository upstream does not confirm: %v, want ErrBlobUnknown", err)
	}
	m, err := e.c.Manifest(ctx, app, "v1")
	if err != nil || m.Digest != md {
		t.Fatalf("tag during the outage: %v %v", m.Digest, err)
	}
	if n := e.up.count("GET manifest"); n != 0 {
		t.Fatalf("the tag's stored manifest was fetched again (%d GETs); a HEAD suffices", n)
	}
	size, err := e.c.StatBlob(ctx, app, d)
	if err != nil || size != int64(len(want)) {
		t.Fatalf("HEAD blob during the outage: %d %v", size, err)
	}
	// Upstream down as well: nothing can be confirmed, the answer is "unavailable", not a leak.
	e.up.set(func(f *fakeUpstream) { f.failWith = errDown })
	if _, err := e.read(t, app, d); !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("with upstream down too: %v, want ErrUnavailable", err)
	}
	e.up.set(func(f *fakeUpstream) { f.failWith = nil })

	// A cold blob is filled; its object is committed, its row waits for the database.
	cold, coldBytes := e.up.addBlob(t, app.Path, 3000)
	if got, err := e.read(t, app, cold); err != nil || !bytes.Equal(got, coldBytes) {
		t.Fatalf("cold blob during the outage: %v", err)
	}
	e.waitFills(t)
	e.meta.down.Store(false)
	if object, isLinked := (&env{blobs: e.blobs.Store, meta: e.meta.Store}).committed(t, app, cold); !object || isLinked {
		t.Fatalf("cold blob after the outage: object %v, linked %v; want an object without a row", object, isLinked)
	}
	if got, err := e.read(t, app, cold); err != nil || !bytes.Equal(got, coldBytes) {
		t.Fatalf("cold blob after the outage: %v", err)
	}
	if _, isLinked := (&env{blobs: e.blobs.Store, meta: e.meta.Store}).committed(t, app, cold); !isLinked {
		t.Fatal("the blob filled during the outage was not linked once the database came back")
	}
}

func TestWithTheBlobStoreDownBlobsPassThroughAndNothingIsCommitted(t *testing.T) {
	e := newFlakyEnv(t)
	ctx := context.Background()
	cached, cachedBytes := e.up.addBlob(t, app.Path, 5000)
	if _, err := e.read(t, app, cached); err != nil {
		t.Fatal(err)
	}
	e.waitFills(t)
	cold, coldBytes := e.up.addBlob(t, app.Path, 300_000)
	md := e.up.tag(app.Path, "v1", "one")
	e.blobs.down.Store(true)

	for _, c := range []struct {
		d    v1.Hash
		want []byte
	}{{cold, coldBytes}, {cached, cachedBytes}} {
		got, err := e.read(t, app, c.d)
		if err != nil || !bytes.Equal(got, c.want) {
			t.Fatalf("blob %s during the outage: %d bytes, %v", c.d, len(got), err)
		}
	}
	m, err := e.c.Manifest(ctx, app, "v1")
	if err != nil || m.Digest != md {
		t.Fatalf("tag during the outage: %v", err)
	}
	e.waitFills(t)
	e.blobs.down.Store(false)
	check := &env{blobs: e.blobs.Store, meta: e.meta.Store}
	if object, isLinked := check.committed(t, app, cold); object || isLinked {
		t.Fatalf("passed-through blob: object %v, linked %v; want neither", object, isLinked)
	}
	if _, err := e.meta.GetTag(ctx, app.String(), "v1"); !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("a tag was recorded whose manifest was not stored: %v", err)
	}
	// Caching resumes with the store.
	if _, err := e.read(t, app, cold); err != nil {
		t.Fatal(err)
	}
	e.waitFills(t)
	if object, isLinked := check.committed(t, app, cold); !object || !isLinked {
		t.Fatalf("after the outage: object %v, linked %v", object, isLinked)
	}
}

func TestATagServedAfterRevalidationTouchesItsManifest(t *testing.T) {
	e := newFlakyEnv(t, cache.WithTagTTL(0))
	ctx := context.Background()
	md := e.up.tag(app.Path, "v1", "one")
	if _, err := e.c.Manifest(ctx, app, "v1"); err != nil {
		t.Fatal(err)
	}
	before, err := e.meta.LastAccess(ctx, md)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	if _, err := e.c.Manifest(ctx, app, "v1"); err != nil {
		t.Fatal(err)
	}
	after, err := e.meta.LastAccess(ctx, md)
	if err != nil {
		t.Fatal(err)
	}
	if !after.After(before) {
		t.Fatalf("last access %s → %s: a revalidated tag does not count as a use, and eviction would take a manifest pulled every minute", before, after)
	}
}
