package storage

import (
	"context"
	"errors"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/jackc/pgx/v5"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/s3"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/postgres"
)

// stores opens the blob store and the metadata store a proxy uses, for inspection.
func stores(t *testing.T, blobURL, dsn string) (blobstore.Store, *postgres.Store) {
	t.Helper()
	cfg, err := s3.ParseURL(blobURL)
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := postgres.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	return blobs, meta
}

// checkNoDanglingRow scans every manifest and blob row and checks that its object exists:
// the invariant "a row exists only while its object does".
func checkNoDanglingRow(t *testing.T, blobs blobstore.Store, dsn string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT digest, size FROM blobs UNION ALL SELECT digest, size FROM manifests")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		digest string
		size   int64
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.digest, &x.size)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		d, err := v1.NewHash(r.digest)
		if err != nil {
			t.Fatalf("row with a bad digest %q", r.digest)
		}
		size, err := blobs.Stat(ctx, d)
		switch {
		case errors.Is(err, blobstore.ErrNotFound):
			t.Errorf("dangling row: %s has no object", d)
		case err != nil:
			t.Errorf("stat %s: %v", d, err)
		case size != r.size:
			t.Errorf("row of %s says %d bytes, the object has %d", d, r.size, size)
		}
	}
	return len(all)
}

// linked reports whether the blob d is linked to repo ("docker.io/library/app").
func linked(t *testing.T, meta metadata.Store, repo string, d v1.Hash) bool {
	t.Helper()
	_, err := meta.GetBlob(t.Context(), repo, d)
	if err != nil && !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("GetBlob: %v", err)
	}
	return err == nil
}

// stored reports whether the blob store holds d.
func stored(t *testing.T, blobs blobstore.Store, d v1.Hash) bool {
	t.Helper()
	_, err := blobs.Stat(t.Context(), d)
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat: %v", err)
	}
	return err == nil
}
