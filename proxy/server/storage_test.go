package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

func TestStoresAreChosenByURL(t *testing.T) {
	hub := fakehub.New(t)
	hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 1, 1000, true))
	dir := t.TempDir()
	blobs, db := filepath.Join(dir, "elsewhere-blobs"), filepath.Join(dir, "elsewhere.db")
	_, host := start(t, hub, server.WithBlobStoreURL("file://"+blobs), server.WithMetadataURL("sqlite://"+db),
		server.WithEviction(server.Eviction{MaxSize: 1 << 30, Interval: time.Hour}))
	pullAll(t, host+"/docker.io/library/app:v1")
	for _, p := range []string{blobs, db} {
		if matches, _ := filepath.Glob(p + "*"); len(matches) == 0 {
			t.Errorf("nothing written at %s", p)
		}
	}
}

func TestBadStoreURLsAreRefusedWithoutEchoingThem(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1")
	for _, tc := range []struct {
		name string
		opt  server.Option
	}{
		{"an unknown blob store scheme", server.WithBlobStoreURL("ftp://x")},
		{"an S3 URL with credentials", server.WithBlobStoreURL("s3://AKIA:s3cret@bucket")},
		{"an unknown metadata scheme", server.WithMetadataURL("mysql://root:s3cret@db/x")},
		{"an unparsable Postgres DSN", server.WithMetadataURL("postgres://u:s3cret@[::1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.New(context.Background(), t.TempDir(), map[string]*url.URL{"docker.io": u}, tc.opt)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error echoes a secret: %v", err)
			}
		})
	}
}

func TestReadinessStaysUpAndReportsAStoreThatIsDown(t *testing.T) {
	hub := fakehub.New(t)
	db, err := sqlite.New(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close() // a database that no longer answers
	srv, _ := start(t, hub, server.WithMetadataStore(db))
	ops := httptest.NewServer(srv.OpsHandler())
	t.Cleanup(ops.Close)
	get := func(path string) (int, string) {
		resp, err := http.Get(ops.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"metadata":"error: `) ||
		!strings.Contains(body, `"blob_store":"ok"`) {
		t.Fatalf("/readyz = %d %s", code, body)
	}
	if err := srv.Ready(context.Background()); err == nil {
		t.Fatal("Ready reports no failure")
	}
	_, metrics := get("/metrics")
	for _, want := range []string{`hubcache_store_up{store="metadata"} 0`, `hubcache_store_up{store="blob_store"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestContradictoryOptionsAreRefusedByNew(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1")
	for _, tc := range []struct {
		name string
		opts []server.Option
	}{
		{"an S3 redirect over a file blob store", []server.Option{server.WithBlobStoreURL("file:///tmp/x"), server.WithS3Redirect(time.Minute)}},
		{"an S3 redirect over the default blob store", []server.Option{server.WithS3Redirect(time.Minute)}},
		{"a negative S3 redirect lifetime", []server.Option{server.WithS3Redirect(-time.Minute)}},
		{"more minimum than maximum Postgres connections", []server.Option{server.WithPostgresPool(server.PostgresPool{MaxConns: 2, MinConns: 3})}},
		{"negative Postgres connections", []server.Option{server.WithPostgresPool(server.PostgresPool{MaxConns: -1})}},
		{"a negative size budget", []server.Option{server.WithEviction(server.Eviction{MaxSize: -1})}},
		{"a negative eviction interval", []server.Option{server.WithEviction(server.Eviction{MaxSize: 1 << 30, Interval: -time.Second})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := server.New(context.Background(), t.TempDir(), map[string]*url.URL{"docker.io": u}, tc.opts...)
			if err == nil {
				s.Close()
				t.Fatal("accepted")
			}
		})
	}
}
