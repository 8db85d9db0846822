package evict_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/evict"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// clockAt evaluates retention against a fixed "now" in the future: puts record the real
// time, and Touch places accesses relative to it.
func clockAt(now time.Time) evict.Option { return evict.WithClock(func() time.Time { return now }) }

func TestTheLeastRecentlyUsedBlobsGoFirst(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		base := time.Now()
		byName := map[string]v1.Hash{}
		byDigest := map[v1.Hash]string{}
		// Put in one order, used in another: the use decides.
		for _, n := range []string{"b3", "b0", "b4", "b1", "b2"} {
			d := mustFill(t, e, n, 10)
			byName[n], byDigest[d] = d, n
		}
		for i := range 5 {
			mustTouch(t, e.meta, byName[fmt.Sprintf("b%d", i)], base.Add(time.Duration(i+1)*time.Hour))
		}

		// A batch of 2 makes the pass query several times.
		ev := evict.New(e.blobs, e.meta, 25, clockAt(base.Add(30*24*time.Hour)), evict.WithBatchSize(2), evict.WithLogger(quiet()))
		res, err := ev.Once(t.Context())
		if err != nil {
			t.Fatalf("Once: %v", err)
		}
		want := evict.Result{SizeBefore: 50, SizeAfter: 20, Objects: 3, Bytes: 30}
		if res != want {
			t.Errorf("Once = %+v, want %+v", res, want)
		}
		var kept []v1.Hash
		for _, c := range recorded(t, e.meta) {
			kept = append(kept, c.Digest)
		}
		if got := names(kept, byDigest); got != "[b3 b4]" {
			t.Errorf("kept %s, want the two most recently used [b3 b4]", got)
		}
		for _, n := range []string{"b0", "b1", "b2"} {
			if isStored(t, e.blobs, byName[n]) {
				t.Errorf("%s was evicted from metadata but its object is still stored", n)
			}
		}
		assertNoDanglingRows(t, e)

		// Under budget, a pass does nothing.
		res, err = ev.Once(t.Context())
		if err != nil || res.Objects != 0 || res.SizeAfter != 20 {
			t.Errorf("second Once = %+v, %v; want nothing evicted", res, err)
		}
	})
}

func TestWhatARecentlyPulledManifestReferencesIsKeptEvenOverBudget(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		base := time.Now()
		now := base.Add(30 * 24 * time.Hour)
		old := base.Add(time.Hour)
		shared := mustFill(t, e, "shared-layer", 100)
		config := mustFill(t, e, "config", 10)
		layer := mustFill(t, e, "layer", 100)
		oldLayer := mustFill(t, e, "old-layer", 100)
		loose := mustFill(t, e, "unreferenced", 100)
		// index (pulled yesterday) → manifest (pulled long ago) → config, layer, shared.
		manifest := mustManifest(t, e, "manifest", manifestType, config, layer, shared)
		index := mustManifest(t, e, "index", indexType, manifest)
		// A manifest pulled just before the retention window: it protects nothing.
		stale := mustManifest(t, e, "stale-manifest", manifestType, oldLayer, shared)
		for _, d := range []v1.Hash{shared, config, layer, oldLayer, loose, manifest, stale} {
			mustTouch(t, e.meta, d, old)
		}
		mustTouch(t, e.meta, stale, now.Add(-evict.DefaultRetention-time.Minute))
		mustTouch(t, e.meta, index, now.Add(-24*time.Hour))

		ev := evict.New(e.blobs, e.meta, 0, clockAt(now), evict.WithLogger(quiet()))
		res, err := ev.Once(t.Context())
		if err != nil {
			t.Fatalf("Once: %v", err)
		}
		if !res.OverBudget || res.Objects != 3 {
			t.Errorf("Once = %+v, want 3 objects evicted and still over budget", res)
		}
		for name, d := range map[string]v1.Hash{
			"index": index, "manifest": manifest, "config": config, "layer": layer, "shared layer": shared,
		} {
			if !isRecorded(t, e.meta, d) || !isStored(t, e.blobs, d) {
				t.Errorf("the %s, protected by the recent index, was evicted", name)
			}
		}
		for name, d := range map[string]v1.Hash{"stale manifest": stale, "its own layer": oldLayer, "unreferenced blob": loose} {
			if isRecorded(t, e.meta, d) || isStored(t, e.blobs, d) {
				t.Errorf("the %s was kept; nothing recent references it", name)
			}
		}
		assertNoDanglingRows(t, e)
	})
}

func TestAPullThatTouchesACandidateAfterItWasListedKeepsIt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		d := mustFill(t, e, "hot", 10)
		meta := &hookedMeta{EvictingStore: e.meta, beforeForget: func(v1.Hash) {
			// A hit between the listing and the removal.
			mustTouch(t, e.meta, d, time.Now().Add(time.Minute))
		}}
		ev := evict.New(e.blobs, meta, 0, evict.WithLogger(quiet()), evict.WithRetention(0))
		res, err := ev.Once(t.Context())
		if err != nil {
			t.Fatalf("Once: %v", err)
		}
		if res.Objects != 0 || !res.OverBudget {
			t.Errorf("Once = %+v, want nothing evicted", res)
		}
		if !isRecorded(t, e.meta, d) || !isStored(t, e.blobs, d) {
			t.Error("the object touched after it was listed was evicted")
		}
	})
}

func TestAFailedDeleteLeavesAnUnrecordedObjectNotADanglingRow(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		d := mustFill(t, e, "stuck", 10)
		blobs := &hookedBlobs{Store: e.blobs, deleteErr: fmt.Errorf("bucket unavailable")}
		ev := evict.New(blobs, e.meta, 0, evict.WithLogger(quiet()), evict.WithRetention(0))
		res, err := ev.Once(t.Context())
		if err == nil {
			t.Fatal("Once hid the failed delete")
		}
		if res.Objects != 1 {
			t.Errorf("Once = %+v, want the row counted as evicted", res)
		}
		if isRecorded(t, e.meta, d) {
			t.Error("the row survived")
		}
		if !isStored(t, e.blobs, d) {
			t.Error("the object should still be there: its delete failed")
		}
		assertNoDanglingRows(t, e)
	})
}

func TestMetricsCountEvictionsAndTheSize(t *testing.T) {
	e := sqliteEnv(t)
	for i := range 4 {
		mustFill(t, e, fmt.Sprint("m", i), 10)
	}
	reg := prometheus.NewRegistry()
	ev := evict.New(e.blobs, e.meta, 20, evict.WithRegisterer(reg), evict.WithRetention(0), evict.WithLogger(quiet()))
	if _, err := ev.Once(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, label string
		want        float64
	}{
		{"hubcache_cache_size_bytes", "", 20},
		{"hubcache_cache_max_size_bytes", "", 20},
		{"hubcache_evicted_bytes_total", "", 20},
		{"hubcache_evicted_objects_total", "blob", 2},
		{"hubcache_evicted_objects_total", "manifest", 0},
		{"hubcache_eviction_runs_total", "ok", 1},
		{"hubcache_eviction_runs_total", "error", 0},
		{"hubcache_eviction_errors_total", "", 0},
	} {
		if got := metricValue(t, reg, tc.name, tc.label); got != tc.want {
			t.Errorf("%s{%s} = %v, want %v", tc.name, tc.label, got, tc.want)
		}
	}
}

// metricValue returns the value of the series of name whose only label has value label
// ("" for a series without labels).
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() != label {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s{%s}", name, label)
	return 0
}

func TestRunEvictsUntilTheContextEnds(t *testing.T) {
	e := sqliteEnv(t)
	for i := range 5 {
		mustFill(t, e, fmt.Sprint("r", i), 10)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	ev := evict.New(e.blobs, e.meta, 30, evict.WithInterval(10*time.Millisecond), evict.WithRetention(0), evict.WithLogger(quiet()))
	go func() {
		defer close(done)
		ev.Run(ctx)
	}()
	// Wait for a pass to bring the size under budget, then stop.
	for {
		total, err := e.meta.TotalSize(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if total <= 30 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	assertNoDanglingRows(t, e)
}
