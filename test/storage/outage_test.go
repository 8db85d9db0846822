package storage

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

// metric returns the line of the /metrics output that starts with prefix, or "".
func (p *proxy) metric(t *testing.T, prefix string) string {
	t.Helper()
	_, body := p.opsGet(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

func TestPostgresStoppedAndRestartedDuringPulls(t *testing.T) {
	pg := startPrivatePostgres(t)
	dsn := freshSchema(t, pg.DSN())
	hub := fakehub.New(t)
	minio := startMinIO(t)
	blobURL := minio.URL("pg-outage")
	app := pushImage(t, hub, "library/app", "v1", 3, 512<<10)
	cold := pushImage(t, hub, "library/cold", "v1", 2, 512<<10)

	p := startProxy(t, hub, server.WithBlobStoreURL(blobURL), server.WithMetadataURL(dsn),
		server.WithPostgresPool(server.PostgresPool{MaxConns: 4, ConnectTimeout: 2 * time.Second}))
	if err := p.pull(app.ref); err != nil {
		t.Fatalf("pull before the outage: %v", err)
	}
	blobGETs := hub.Counts().TotalBlobGET()

	pg.Stop(t)
	for _, ref := range []string{app.ref, app.byDigst} {
		if err := p.pull(ref); err != nil {
			t.Errorf("cached image during the outage: %v", err)
		}
	}
	if got := hub.Counts().TotalBlobGET(); got != blobGETs {
		t.Errorf("cached blobs were fetched again from upstream during the outage (%d GETs), want them served from MinIO", got-blobGETs)
	}
	if err := p.pull(cold.ref); err != nil {
		t.Errorf("uncached image during the outage: %v", err)
	}
	if errs := p.serverErrors(); len(errs) > 0 {
		t.Errorf("5xx answers during the outage: %v", errs)
	}
	code, body := p.opsGet(t, "/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"metadata":"error`) ||
		!strings.Contains(body, `"blob_store":"ok"`) {
		t.Errorf("/readyz during the outage = %d %s; want 200, degraded, metadata error", code, body)
	}
	if got := p.metric(t, `hubcache_store_up{store="metadata"}`); !strings.HasSuffix(got, " 0") {
		t.Errorf("store gauge during the outage: %q", got)
	}
	if got := p.metric(t, `hubcache_degraded_requests_total{kind="blob",store="metadata"}`); got == "" {
		t.Error("no degraded request counted")
	}

	pg.Start(t)
	// No proxy restart: the pool reconnects on the next request.
	for _, ref := range []string{app.ref, cold.ref, cold.byDigst} {
		if err := p.pull(ref); err != nil {
			t.Errorf("pull after Postgres came back: %v", err)
		}
	}
	if errs := p.serverErrors(); len(errs) > 0 {
		t.Errorf("5xx answers after the outage: %v", errs)
	}
	code, body = p.opsGet(t, "/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("/readyz after the outage = %d %s", code, body)
	}
	if got := p.metric(t, `hubcache_store_up{store="metadata"}`); !strings.HasSuffix(got, " 1") {
		t.Errorf("store gauge after the outage: %q", got)
	}
	blobs, meta := stores(t, blobURL, dsn)
	for _, d := range cold.layers {
		if !stored(t, blobs, d) || !linked(t, meta, "docker.io/library/cold", d) {
			t.Errorf("blob %s of the image first pulled during the outage is not stored and linked now", d)
		}
	}
	checkNoDanglingRow(t, blobs, dsn)
	// Everything is cached again: another pull fetches no blob.
	blobGETs = hub.Counts().TotalBlobGET()
	if err := p.pull(cold.ref); err != nil {
		t.Fatal(err)
	}
	if got := hub.Counts().TotalBlobGET(); got != blobGETs {
		t.Errorf("a warm pull after recovery fetched %d blobs upstream", got-blobGETs)
	}
}

func TestMinIOStoppedAndRestartedDuringPulls(t *testing.T) {
	hub := fakehub.New(t)
	minio := startMinIO(t)
	dsn := freshSchema(t, baseDSN())
	blobURL := minio.URL("s3-outage")
	app := pushImage(t, hub, "library/app", "v1", 3, 512<<10)
	cold := pushImage(t, hub, "library/cold", "v1", 2, 512<<10)

	p := startProxy(t, hub, server.WithBlobStoreURL(blobURL), server.WithMetadataURL(dsn))
	if err := p.pull(app.ref); err != nil {
		t.Fatalf("pull before the outage: %v", err)
	}
	blobs, meta := stores(t, blobURL, dsn)

	if err := minio.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{cold.ref, app.ref, app.byDigst} {
		if err := p.pull(ref); err != nil {
			t.Errorf("pull during the S3 outage: %v", err)
		}
	}
	if errs := p.serverErrors(); len(errs) > 0 {
		t.Errorf("5xx answers during the S3 outage: %v", errs)
	}
	for _, d := range cold.layers {
		if linked(t, meta, "docker.io/library/cold", d) {
			t.Errorf("blob %s passed through during the outage was recorded", d)
		}
	}
	code, body := p.opsGet(t, "/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"blob_store":"error`) {
		t.Errorf("/readyz during the outage = %d %s; want 200, degraded, blob_store error", code, body)
	}
	if got := p.metric(t, `hubcache_store_up{store="blob_store"}`); !strings.HasSuffix(got, " 0") {
		t.Errorf("store gauge during the outage: %q", got)
	}
	if got := p.metric(t, `hubcache_degraded_requests_total{kind="blob",store="blob_store"}`); got == "" {
		t.Error("no pass-through counted")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := minio.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range cold.layers {
		if stored(t, blobs, d) {
			t.Errorf("blob %s passed through during the outage was committed", d)
		}
	}
	if err := p.pull(cold.ref); err != nil {
		t.Fatalf("pull after MinIO came back: %v", err)
	}
	for _, d := range cold.layers {
		if !stored(t, blobs, d) || !linked(t, meta, "docker.io/library/cold", d) {
			t.Errorf("caching did not resume: blob %s is not stored and linked", d)
		}
	}
	blobGETs := hub.Counts().TotalBlobGET()
	for _, ref := range []string{cold.ref, app.ref} {
		if err := p.pull(ref); err != nil {
			t.Fatal(err)
		}
	}
	if got := hub.Counts().TotalBlobGET(); got != blobGETs {
		t.Errorf("warm pulls after recovery fetched %d blobs upstream", got-blobGETs)
	}
	if errs := p.serverErrors(); len(errs) > 0 {
		t.Errorf("5xx answers after the outage: %v", errs)
	}
	checkNoDanglingRow(t, blobs, dsn)
}
