package storage

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

func TestTheProxyOnMinIOAndPostgresPullsImagesCorrectly(t *testing.T) {
	hub := fakehub.New(t)
	minio := startMinIO(t)
	dsn := freshSchema(t, baseDSN())
	blobURL := minio.URL("cache")
	app := pushImage(t, hub, "library/app", "v1", 3, 1<<20)
	hub.PushIndex(t, "library/multi", "v1", fakehub.RandomIndex(t, []string{"linux/amd64", "linux/arm64"}, 2, 256<<10, true))

	p := startProxy(t, hub, server.WithBlobStoreURL(blobURL), server.WithMetadataURL(dsn),
		server.WithPostgresPool(server.PostgresPool{MaxConns: 8}))
	for _, ref := range []string{app.ref, app.byDigst, "library/multi:v1"} {
		if err := p.pull(ref); err != nil {
			t.Fatalf("cold pull: %v", err)
		}
	}
	blobGETs := hub.Counts().TotalBlobGET()
	for _, ref := range []string{app.ref, app.byDigst, "library/multi:v1"} {
		if err := p.pull(ref); err != nil {
			t.Fatalf("warm pull: %v", err)
		}
	}
	if got := hub.Counts().TotalBlobGET(); got != blobGETs {
		t.Errorf("warm pulls fetched %d blobs from upstream, want none", got-blobGETs)
	}
	if errs := p.serverErrors(); len(errs) > 0 {
		t.Errorf("5xx answers: %v", errs)
	}
	blobs, meta := stores(t, blobURL, dsn)
	for _, d := range app.layers {
		if !stored(t, blobs, d) || !linked(t, meta, "docker.io/library/app", d) {
			t.Errorf("blob %s is not stored in MinIO and linked in Postgres", d)
		}
	}
	if n := checkNoDanglingRow(t, blobs, dsn); n == 0 {
		t.Error("no rows recorded")
	}
	if code, body := p.opsGet(t, "/readyz"); code != http.StatusOK || !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("/readyz = %d %s", code, body)
	}

	t.Run("blob GETs are redirected to presigned MinIO URLs with --s3-redirect", func(t *testing.T) {
		r := startProxy(t, hub, server.WithBlobStoreURL(blobURL), server.WithMetadataURL(dsn), server.WithS3Redirect(time.Minute))
		layer := app.layers[1]
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Get(r.http.URL + "/v2/docker.io/library/app/blobs/" + layer.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, minio.Endpoint) {
			t.Fatalf("GET blob = %d, Location %q; want 307 to %s", resp.StatusCode, loc, minio.Endpoint)
		}
		got, err := http.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(got.Body)
		got.Body.Close()
		if sha(body) != layer {
			t.Fatalf("the presigned URL served %d bytes with another digest", len(body))
		}
		// Another repository gets no redirect for content upstream does not confirm.
		resp, err = client.Get(r.http.URL + "/v2/docker.io/library/other/blobs/" + layer.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTemporaryRedirect {
			t.Fatal("a blob of library/app was redirected under library/other")
		}
		if err := r.pull(app.ref); err != nil {
			t.Fatalf("pull through redirects: %v", err)
		}

		// Once the repository turned private upstream (and its answer is rechecked), its
		// cached blob is refused, never redirected to the store (docs/private-images.md).
		hub.SetPrivate("library/app", true)
		defer hub.SetPrivate("library/app", false)
		priv := startProxy(t, hub, server.WithBlobStoreURL(blobURL), server.WithMetadataURL(dsn),
			server.WithS3Redirect(time.Minute), server.WithVisibilityTTL(time.Nanosecond))
		resp, err = client.Get(priv.http.URL + "/v2/docker.io/library/app/blobs/" + layer.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("GET of a cached blob of a now private repository = %d, Location %q; want 403", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}
