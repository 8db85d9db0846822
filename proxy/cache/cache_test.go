package cache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
	"github.com/hubcache/hubcache/proxy/upstream"
)

var (
	app   = cache.Repo{Registry: "docker.io", Path: "library/app"}
	other = cache.Repo{Registry: "docker.io", Path: "someone/private"}
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	c     *cache.Cache
	up    *fakeUpstream
	blobs *file.Store
	meta  *sqlite.Store
	clock *clock
	reg   *prometheus.Registry
	root  string // the temporary directory holding the stores
}

// newEnv builds a cache over the real file store and SQLite in a temporary directory.
func newEnv(t *testing.T, opts ...cache.Option) *env {
	t.Helper()
	return newEnvIn(t, t.TempDir(), nil, opts...)
}

// newEnvIn is newEnv in dir (blobs/ holds the file store, spool/ the spool), with the cache
// over wrap(the file store) when wrap is set.
func newEnvIn(t *testing.T, dir string, wrap func(*file.Store) blobstore.Store, opts ...cache.Option) *env {
	t.Helper()
	ctx := context.Background()
	blobs, err := file.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := sqlite.New(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Close() })
	e := &env{up: newFakeUpstream(), blobs: blobs, meta: meta, clock: &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, reg: prometheus.NewRegistry(), root: dir}
	opts = append([]cache.Option{
		cache.WithClock(e.clock.Now),
		cache.WithRegisterer(e.reg),
		cache.WithSpoolDir(filepath.Join(dir, "spool")),
		cache.WithLogger(slog.New(slog.DiscardHandler)),
		cache.WithRegistries("docker.io"),
		// These tests ask upstream again after a "not found" on purpose; the negative cache
		// has its own tests (proxy/server).
		cache.WithNegativeTTL(0),
	}, opts...)
	var store blobstore.Store = blobs
	if wrap != nil {
		store = wrap(blobs)
	}
	c, err := cache.New(store, meta, e.up, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e.c = c
	return e
}

// metric returns the value of a counter or gauge with the given labels (0 when absent).
func (e *env) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func readBlob(ctx context.Context, b cache.Blob, offset, length int64) ([]byte, error) {
	rc, err := b.Open(ctx, offset, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// committed reports whether the store has the object and repo has a metadata link to it.
func (e *env) committed(t *testing.T, repo cache.Repo, d v1.Hash) (object, linked bool) {
	t.Helper()
	ctx := context.Background()
	_, err := e.blobs.Stat(ctx, d)
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal(err)
	}
	_, merr := e.meta.GetBlob(ctx, repo.String(), d)
	if merr != nil && !errors.Is(merr, metadata.ErrNotFound) {
		t.Fatal(merr)
	}
	return err == nil, merr == nil
}

// waitFills waits until no fill is in progress (fills end on their own after the last byte).
func (e *env) waitFills(t *testing.T) {
	t.Helper()
	for range 2000 {
		if e.metric(t, "hubcache_blob_fills_in_flight", nil) == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("fill still in progress")
}

func TestAColdBlobIsFetchedOnceVerifiedCommittedAndThenServedFromTheStore(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 3<<20)

	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	if b.Size() != int64(len(want)) || b.Digest() != d {
		t.Fatalf("blob says %s/%d, want %s/%d", b.Digest(), b.Size(), d, len(want))
	}
	got, err := readBlob(ctx, b, 0, -1)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("first read: %d bytes, err %v; want the %d upstream bytes", len(got), err, len(want))
	}
	e.waitFills(t)
	if object, linked := e.committed(t, app, d); !object || !linked {
		t.Fatalf("after the fill: object %v, linked %v; want both", object, linked)
	}

	e.up.set(func(f *fakeUpstream) { f.failWith = upstream.ErrUnavailable })
	b, err = e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatalf("cached blob with upstream down: %v", err)
	}
	got, err = readBlob(ctx, b, 10, 100)
	if err != nil || !bytes.Equal(got, want[10:110]) {
		t.Fatalf("cached range read: %v", err)
	}
	if n := e.up.count("GET blob"); n != 1 {
		t.Fatalf("upstream blob GETs = %d, want 1", n)
	}
	if hits := e.metric(t, "hubcache_cache_hits_total", map[string]string{"kind": "blob"}); hits != 1 {
		t.Fatalf("blob hits = %v, want 1", hits)
	}
}

func TestBadUpstreamBytesAreNeverCommittedAndTheReaderFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(f *fakeUpstream)
	}{
		{"a corrupt body fails the digest check", func(f *fakeUpstream) { f.corrupt = true }},
		{"a truncated body fails the size check", func(f *fakeUpstream) { f.truncate = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			d, want := e.up.addBlob(t, app.Path, 1<<20)
			e.up.set(tc.break_)

			b, err := e.c.Blob(ctx, app, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readBlob(ctx, b, 0, -1)
			if err == nil {
				t.Fatalf("read of a bad fill succeeded with %d bytes", len(got))
			}
			if int64(len(got)) >= b.Size() {
				t.Fatalf("reader got all %d bytes of a bad fill before failing", len(got))
			}
			e.waitFills(t)
			if object, linked := e.committed(t, app, d); object || linked {
				t.Fatalf("bad fill left object %v, link %v", object, linked)
			}

			// Upstream recovers: the next request fetches again and succeeds.
			e.up.set(func(f *fakeUpstream) { f.corrupt, f.truncate = false, false })
			b, err = e.c.Blob(ctx, app, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err = readBlob(ctx, b, 0, -1)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after recovery: %d bytes, err %v", len(got), err)
			}
			if n := e.up.count("GET blob"); n != 2 {
				t.Fatalf("upstream blob GETs = %d, want 2", n)
			}
		})
	}
}

func TestFiftyConcurrentReadersOfAColdBlobShareOneUpstreamGet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d, _ := e.up.addBlob(t, app.Path, 4<<20)
	gate := make(chan struct{})
	e.up.set(func(f *fakeUpstream) { f.gate = gate })

	const readers = 50
	var joined, done sync.WaitGroup
	joined.Add(readers)
	done.Add(readers)
	errs := make(chan error, readers)
	for range readers {
		go func() {
			defer done.Done()
			b, err := e.c.Blob(ctx, app, d)
			joined.Done()
			if err != nil {
				errs <- err
				return
			}
			rc, err := b.Open(ctx, 0, -1)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			h := sha256.New()
			if _, err := io.Copy(h, rc); err != nil {
				errs <- err
				return
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
				errs <- fmt.Errorf("reader got sha256:%s", got)
			}
		}()
	}
	// Every reader has its Blob (its "headers") while the fill is stuck halfway.
	joined.Wait()
	close(gate)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.up.count("GET blob"); n != 1 {
		t.Fatalf("upstream blob GETs = %d, want 1", n)
	}
}

func TestAClientThatLeavesDoesNotCancelTheFill(t *testing.T) {
	e := newEnv(t)
	d, want := e.up.addBlob(t, app.Path, 1<<20)
	gate := make(chan struct{})
	e.up.set(func(f *fakeUpstream) { f.gate = gate })

	ctx, cancel := context.WithCancel(context.Background())
	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := b.Open(ctx, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after the client left: %v, want context.Canceled", err)
	}
	rc.Close()
	close(gate)
	e.waitFills(t)
	if object, linked := e.committed(t, app, d); !object || !linked {
		t.Fatalf("fill of a departed client: object %v, linked %v; want both", object, linked)
	}
	b, err = e.c.Blob(context.Background(), app, d)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readBlob(context.Background(), b, 0, -1); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read from the store: err %v", err)
	}
}

func TestRangeReadsOfAFillInProgressWaitForTheirBytes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 1<<20)
	gate := make(chan struct{})
	e.up.set(func(f *fakeUpstream) { f.gate = gate })
	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		got []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		got, err := readBlob(ctx, b, 700_000, 1000) // beyond the gate: waits for the rest
		res <- result{got, err}
	}()
	close(gate)
	r := <-res
	if r.err != nil || !bytes.Equal(r.got, want[700_000:701_000]) {
		t.Fatalf("middle range: %d bytes, err %v", len(r.got), r.err)
	}
}

func TestABlobIsServedUnderARepositoryOnlyWhenUpstreamLinksItThere(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d, want := e.up.addBlob(t, other.Path, 1000)

	b, err := e.c.Blob(ctx, other, d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(ctx, b, 0, -1); err != nil {
		t.Fatal(err)
	}
	e.waitFills(t)

	// Cached for "other", but upstream does not have it under "app": not served.
	if _, err := e.c.Blob(ctx, app, d); !errors.Is(err, cache.ErrBlobUnknown) {
		t.Fatalf("blob of another repository: %v, want ErrBlobUnknown", err)
	}
	if _, err := e.c.StatBlob(ctx, app, d); !errors.Is(err, cache.ErrBlobUnknown) {
		t.Fatalf("stat of another repository's blob: %v, want ErrBlobUnknown", err)
	}
	// Once upstream has it under "app" too, it is linked after a HEAD, without a GET.
	e.up.set(func(f *fakeUpstream) { f.link(app.Path, d) })
	b, err = e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readBlob(ctx, b, 0, -1); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("linked read: %v", err)
	}
	if n := e.up.count("GET blob"); n != 1 {
		t.Fatalf("upstream blob GETs = %d, want 1", n)
	}
	if _, linked := e.committed(t, app, d); !linked {
		t.Fatal("blob not linked to app after upstream confirmed it")
	}
}

func TestAMissingObjectIsForgottenAndFetchedAgain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 5000)
	md := e.up.tag(app.Path, "v1", "one")
	for range 2 {
		b, err := e.c.Blob(ctx, app, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readBlob(ctx, b, 0, -1); err != nil {
			t.Fatal(err)
		}
		e.waitFills(t)
		if _, err := e.c.Manifest(ctx, app, "v1"); err != nil {
			t.Fatal(err)
		}
		// Lose both objects behind the metadata's back.
		for _, x := range []v1.Hash{d, md} {
			if err := e.blobs.Delete(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := e.up.count("GET blob"); n != 2 {
		t.Fatalf("upstream blob GETs = %d, want 2 (one refetch)", n)
	}
	if n := e.up.count("GET manifest"); n != 2 {
		t.Fatalf("upstream manifest GETs = %d, want 2 (one refetch)", n)
	}
	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readBlob(ctx, b, 0, -1); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("healed read: %v", err)
	}
	if healed := e.metric(t, "hubcache_cache_heals_total", map[string]string{"kind": "blob"}); healed < 1 {
		t.Fatalf("heals = %v", healed)
	}
}

func TestARetryAfterAFailedBlobFetchStartsAFreshFetch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 1000)
	for _, tc := range []struct {
		err   error
		check func(error) bool
	}{
		{&upstream.RateLimitError{RetryAfter: time.Second}, func(err error) bool {
			var tm *cache.TooManyRequestsError
			return errors.As(err, &tm)
		}},
		{upstream.ErrUnavailable, func(err error) bool { return errors.Is(err, cache.ErrUnavailable) }},
		{upstream.ErrNotFound, func(err error) bool { return errors.Is(err, cache.ErrBlobUnknown) }},
	} {
		e.up.set(func(f *fakeUpstream) { f.failWith = tc.err })
		if _, err := e.c.Blob(ctx, app, d); !tc.check(err) {
			t.Fatalf("upstream %v: got %v", tc.err, err)
		}
	}
	e.up.set(func(f *fakeUpstream) { f.failWith = nil })
	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatalf("retry after recovery: %v", err)
	}
	if got, err := readBlob(ctx, b, 0, -1); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("retry read: %v", err)
	}
}
