package storage

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

func TestEvictionUnderASmallBudgetWhilePullsRun(t *testing.T) {
	hub := fakehub.New(t)
	minio := startMinIO(t)
	dsn := freshSchema(t, baseDSN())
	blobURL := minio.URL("evict")
	// Six images of 2 × 256 KiB against a 1 MiB budget: most of the cache is evicted over and
	// over while clients pull.
	var images []image
	for i := range 6 {
		images = append(images, pushImage(t, hub, fmt.Sprintf("library/app%d", i), "v1", 2, 256<<10))
	}
	p := startProxy(t, hub, server.WithBlobStoreURL(blobURL), server.WithMetadataURL(dsn),
		server.WithEviction(server.Eviction{MaxSize: 1 << 20, Retention: time.Nanosecond, Interval: 10 * time.Millisecond}))

	const clients, rounds = 4, 4
	var wg sync.WaitGroup
	errs := make(chan error, clients*rounds*len(images)*2)
	for c := range clients {
		wg.Go(func() {
			for r := range rounds {
				for i := range images {
					img := images[(i+c+r)%len(images)]
					ref := img.ref
					if (i+r)%2 == 1 {
						ref = img.byDigst
					}
					if err := p.pull(ref); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("pull during eviction: %v", err)
	}
	if e := p.serverErrors(); len(e) > 0 {
		t.Errorf("5xx answers during eviction: %v", e)
	}
	evicted := p.metric(t, `hubcache_evicted_objects_total{kind="blob"}`)
	if evicted == "" || strings.HasSuffix(evicted, " 0") {
		t.Errorf("nothing was evicted (%q): the test did not exercise eviction", evicted)
	}
	// Stop the evictor and every fill, then check that no row points at a missing object.
	if err := p.srv.Close(); err != nil {
		t.Fatal(err)
	}
	blobs, _ := stores(t, blobURL, dsn)
	checkNoDanglingRow(t, blobs, dsn)
	t.Logf("%s; upstream blob GETs: %d", evicted, hub.Counts().TotalBlobGET())
}
