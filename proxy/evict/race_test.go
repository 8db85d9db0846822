package evict_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/evict"
	"github.com/hubcache/hubcache/proxy/evict/pglock"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/metadatatest"
)

// hookedBlobs is the real blob store with a hook that runs before each Delete, to place a
// fill at an exact point of an eviction.
type hookedBlobs struct {
	blobstore.Store
	beforeDelete func(d v1.Hash)
	deleteErr    error
}

func (h *hookedBlobs) Delete(ctx context.Context, d v1.Hash) error {
	if h.beforeDelete != nil {
		h.beforeDelete(d)
	}
	if h.deleteErr != nil {
		return h.deleteErr
	}
	return h.Store.Delete(ctx, d)
}

// hookedMeta is the real metadata store with a hook before each ForgetIfUnused.
type hookedMeta struct {
	metadatatest.EvictingStore
	beforeForget func(d v1.Hash)
}

func (h *hookedMeta) ForgetIfUnused(ctx context.Context, d v1.Hash, accessedBefore, protectSince time.Time) (bool, error) {
	if h.beforeForget != nil {
		h.beforeForget(d)
	}
	return h.EvictingStore.ForgetIfUnused(ctx, d, accessedBefore, protectSince)
}

func TestAFillRecordedBetweenTheForgetAndTheDeleteLosesItsRowToo(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		b, d := content("raced", 10)
		if err := fillBlob(t.Context(), e.blobs, e.meta, b, d); err != nil {
			t.Fatal(err)
		}
		// Used after "raced": the budget keeps it, so the pass stops once "raced" is gone and
		// does not clean up after the race by evicting "raced" a second time.
		keeper := mustFill(t, e, "keeper", 10)
		var once sync.Once
		blobs := &hookedBlobs{Store: e.blobs, beforeDelete: func(v1.Hash) {
			once.Do(func() {
				// The row is gone: a pull misses, fills, records, and finds its object still
				// there — the evictor is about to delete it.
				if err := fillBlob(t.Context(), e.blobs, e.meta, b, d); err != nil {
					t.Errorf("fill during eviction: %v", err)
				}
			})
		}}
		ev := evict.New(blobs, e.meta, 10, evict.WithRetention(0), evict.WithLogger(quiet()))
		if _, err := ev.Once(t.Context()); err != nil {
			t.Fatalf("Once: %v", err)
		}
		if isRecorded(t, e.meta, d) {
			t.Error("the evictor deleted the object the racing fill recorded, and left its row")
		}
		if !isRecorded(t, e.meta, keeper) {
			t.Error("the object within budget was evicted")
		}
		assertNoDanglingRows(t, e)
	})
}

func TestAFillRecordedAfterTheDeleteForgetsItsOwnRow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		b, d := content("late", 10)
		if err := fillBlob(t.Context(), e.blobs, e.meta, b, d); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		blobs := &hookedBlobs{Store: e.blobs, beforeDelete: func(v1.Hash) {
			// A fill commits its object now and records it only after the eviction ended.
			once.Do(func() {
				if err := commit(t.Context(), e.blobs, d, b); err != nil {
					t.Errorf("commit during eviction: %v", err)
				}
			})
		}}
		ev := evict.New(blobs, e.meta, 0, evict.WithRetention(0), evict.WithLogger(quiet()))
		if _, err := ev.Once(t.Context()); err != nil {
			t.Fatalf("Once: %v", err)
		}
		if err := e.meta.PutBlob(t.Context(), repo, metadata.Blob{Digest: d, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		// This is the window CheckRecorded closes: the row now points at a deleted object.
		if isStored(t, e.blobs, d) {
			t.Fatal("the object survived its eviction; this test no longer places the fill in the window")
		}
		if err := evict.CheckRecorded(t.Context(), e.blobs, e.meta, d); !errors.Is(err, evict.ErrEvictedDuringFill) {
			t.Errorf("CheckRecorded = %v, want ErrEvictedDuringFill", err)
		}
		assertNoDanglingRows(t, e)
	})
}

// fillLRU records n blobs of 10 bytes, used in order: name i is the i-th least recently used.
func fillLRU(t *testing.T, e *env, n int) []v1.Hash {
	t.Helper()
	base := time.Now()
	ds := make([]v1.Hash, n)
	for i := range n {
		ds[i] = mustFill(t, e, fmt.Sprint("lru", i), 10)
		mustTouch(t, e.meta, ds[i], base.Add(time.Duration(i+1)*time.Minute))
	}
	return ds
}

// keptSuffix reports how many of ds (least recently used first) are still recorded, and
// whether they are exactly the most recently used ones.
func keptSuffix(t *testing.T, e *env, ds []v1.Hash) (kept int, suffix bool) {
	t.Helper()
	rows := map[v1.Hash]bool{}
	for _, c := range recorded(t, e.meta) {
		rows[c.Digest] = true
	}
	suffix = true
	for i, d := range ds {
		if rows[d] {
			kept++
		} else if i > 0 && rows[ds[i-1]] {
			suffix = false // an older one kept while a newer one went
		}
	}
	return kept, suffix
}

func TestConcurrentEvictorsOnSeveralReplicasStayConsistent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ds := fillLRU(t, e, 30)
		const replicas = 3
		results := make([]evict.Result, replicas)
		errs := make([]error, replicas)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range replicas {
			meta := e.replica(t)
			ev := evict.New(newFileStore(t, e.root), meta, 100, evict.WithBatchSize(4), evict.WithLogger(quiet()))
			wg.Go(func() {
				<-start
				results[i], errs[i] = ev.Once(t.Context())
			})
		}
		close(start)
		wg.Wait()
		removed := 0
		for i := range replicas {
			if errs[i] != nil {
				t.Errorf("replica %d: %v", i, errs[i])
			}
			removed += results[i].Objects
		}
		kept, suffix := keptSuffix(t, e, ds)
		t.Logf("%s: %d kept; evicted per replica: %d, %d, %d", e.name, kept, results[0].Objects, results[1].Objects, results[2].Objects)
		if removed != len(ds)-kept {
			t.Errorf("the replicas report %d evictions, %d rows are gone: an object was counted twice or not at all", removed, len(ds)-kept)
		}
		if kept > 10 {
			t.Errorf("%d objects kept, the budget holds 10", kept)
		}
		if !suffix {
			t.Error("a more recently used object was evicted while an older one was kept")
		}
		assertNoDanglingRows(t, e)
	})
}

// pull does what the cache does for a blob: serve the recorded object, or heal and fill.
// It returns the bytes the client would get.
func pull(ctx context.Context, blobs blobstore.Store, meta metadatatest.EvictingStore, name string) error {
	want, d := content(name, 64)
	if _, err := meta.GetBlob(ctx, repo, d); err == nil {
		got, err := readAll(ctx, blobs, d)
		if err == nil {
			if string(got) != string(want) {
				return fmt.Errorf("pull %s: served %d wrong bytes", name, len(got))
			}
			// A hit moves the last access forward.
			return meta.Touch(ctx, d, time.Now())
		}
		if !errors.Is(err, blobstore.ErrNotFound) {
			return fmt.Errorf("pull %s: %w", name, err)
		}
		// Recorded but gone: a miss that heals.
		if err := meta.Forget(ctx, d); err != nil {
			return fmt.Errorf("pull %s: heal: %w", name, err)
		}
	} else if !errors.Is(err, metadata.ErrNotFound) {
		return fmt.Errorf("pull %s: %w", name, err)
	}
	// A miss: the client gets the bytes of the fill, whether or not they stay cached.
	if err := fillBlob(ctx, blobs, meta, want, d); err != nil && !errors.Is(err, evict.ErrEvictedDuringFill) {
		return fmt.Errorf("pull %s: fill: %w", name, err)
	}
	return nil
}

func TestEvictionUnderASmallBudgetWhilePullsRunLeavesNoFailedPullAndNoDanglingRow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const (
			pullers    = 4
			pullsEach  = 150
			images     = 40
			evictors   = 2
			budgetSize = 10 * 64 // a quarter of the working set
		)
		ctx := t.Context()
		var stop atomic.Bool
		var evicted atomic.Int64
		var wg sync.WaitGroup
		for i := range evictors {
			ev := evict.New(newFileStore(t, e.root), e.replica(t), budgetSize,
				evict.WithBatchSize(3), evict.WithLogger(quiet()))
			wg.Go(func() {
				for !stop.Load() {
					res, err := ev.Once(ctx)
					if err != nil {
						t.Errorf("evictor %d: %v", i, err)
						return
					}
					evicted.Add(int64(res.Objects))
					time.Sleep(time.Millisecond) // let the pulls have the database
				}
			})
		}
		var pulls sync.WaitGroup
		for p := range pullers {
			meta := e.replica(t)
			blobs := newFileStore(t, e.root)
			rng := rand.New(rand.NewPCG(uint64(p), 42))
			pulls.Go(func() {
				for range pullsEach {
					if err := pull(ctx, blobs, meta, fmt.Sprint("image", rng.IntN(images))); err != nil {
						t.Errorf("puller %d: %v", p, err)
						return
					}
				}
			})
		}
		pulls.Wait()
		stop.Store(true)
		wg.Wait()
		if evicted.Load() == 0 {
			t.Error("nothing was evicted: the test did not exercise eviction")
		}
		t.Logf("%s: %d pulls, %d evictions", e.name, pullers*pullsEach, evicted.Load())
		assertNoDanglingRows(t, e)
		// Every image is still pullable.
		for i := range images {
			if err := pull(ctx, e.blobs, e.meta, fmt.Sprint("image", i)); err != nil {
				t.Errorf("after eviction: %v", err)
			}
		}
		assertNoDanglingRows(t, e)
	})
}

func TestWithThePostgresLockConcurrentEvictorsFreeExactlyTheExcess(t *testing.T) {
	e := postgresEnv(t)
	ds := fillLRU(t, e, 30)
	const replicas = 3
	results := make([]evict.Result, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range replicas {
		lock, err := pglock.New(e.dsn)
		if err != nil {
			t.Fatal(err)
		}
		ev := evict.New(newFileStore(t, e.root), e.replica(t), 100,
			evict.WithBatchSize(4), evict.WithLocker(lock), evict.WithLogger(quiet()))
		wg.Go(func() {
			<-start
			results[i], errs[i] = ev.Once(t.Context())
		})
	}
	close(start)
	wg.Wait()
	removed := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Errorf("replica %d: %v", i, errs[i])
		}
		removed += results[i].Objects
	}
	if kept, suffix := keptSuffix(t, e, ds); kept != 10 || !suffix || removed != 20 {
		t.Errorf("kept %d (the most recent: %v), removed %d; want the 10 most recent kept and 20 removed once",
			kept, suffix, removed)
	}
	assertNoDanglingRows(t, e)
}
