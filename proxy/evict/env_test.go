package evict_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/evict"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/metadatatest"
	"github.com/hubcache/hubcache/proxy/metadata/postgres"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
	"github.com/hubcache/hubcache/test/pgtest"
)

const (
	repo         = "docker.io/library/app"
	manifestType = "application/vnd.oci.image.manifest.v1+json"
	indexType    = "application/vnd.oci.image.index.v1+json"
)

// env is one cache deployment: a file blob store and a metadata database that several
// replicas may open.
type env struct {
	name  string
	blobs blobstore.Store
	// root is the file store's directory: another file.Store on it is another replica's
	// view of one shared volume.
	root string
	meta metadatatest.EvictingStore
	// replica opens another connection to the same metadata database, as another replica
	// of the proxy would.
	replica func(t *testing.T) metadatatest.EvictingStore
	// dsn is the Postgres DSN selecting this env's schema ("" for SQLite).
	dsn string
}

// forEachBackend runs fn against the file store with SQLite, and with Postgres (skipped on a
// machine without Postgres, failed in CI).
func forEachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, sqliteEnv(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresEnv(t)) })
}

func newFileStore(t *testing.T, root string) blobstore.Store {
	t.Helper()
	s, err := file.New(root)
	if err != nil {
		t.Fatalf("file.New: %v", err)
	}
	return s
}

func sqliteEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "meta.db")
	open := func(t *testing.T) metadatatest.EvictingStore {
		t.Helper()
		s, err := sqlite.New(t.Context(), path)
		if err != nil {
			t.Fatalf("sqlite.New: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	root := filepath.Join(dir, "blobs")
	return &env{name: "sqlite", blobs: newFileStore(t, root), root: root, meta: open(t), replica: open}
}

func postgresEnv(t *testing.T) *env {
	t.Helper()
	dsn, _ := pgtest.Schema(t, "hubcache_evict_test_")
	open := func(t *testing.T) metadatatest.EvictingStore {
		t.Helper()
		s, err := postgres.New(t.Context(), dsn, postgres.WithMaxConns(4))
		if err != nil {
			t.Fatalf("postgres.New: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	root := t.TempDir()
	return &env{name: "postgres", blobs: newFileStore(t, root), root: root, meta: open(t), replica: open, dsn: dsn}
}

// content returns size deterministic bytes named by name, and their digest.
func content(name string, size int) ([]byte, v1.Hash) {
	b := bytes.Repeat([]byte(name+"|"), size/(len(name)+1)+1)[:size]
	sum := sha256.Sum256(b)
	return b, v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// commit writes b into the blob store under d.
func commit(ctx context.Context, blobs blobstore.Store, d v1.Hash, b []byte) error {
	w, err := blobs.Create(ctx, d)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		_ = w.Cancel(ctx)
		return err
	}
	return w.Commit(ctx)
}

// fillBlob does what the cache does on a miss: commit the object, record it, then check it
// is still there (evict.CheckRecorded).
func fillBlob(ctx context.Context, blobs blobstore.Store, meta metadata.Store, b []byte, d v1.Hash) error {
	if err := commit(ctx, blobs, d, b); err != nil {
		return err
	}
	if err := meta.PutBlob(ctx, repo, metadata.Blob{Digest: d, Size: int64(len(b))}); err != nil {
		return err
	}
	return evict.CheckRecorded(ctx, blobs, meta, d)
}

func mustFill(t *testing.T, e *env, name string, size int) v1.Hash {
	t.Helper()
	b, d := content(name, size)
	if err := fillBlob(t.Context(), e.blobs, e.meta, b, d); err != nil {
		t.Fatalf("fill %s: %v", name, err)
	}
	return d
}

// mustManifest records a manifest object (bytes named by name) referencing children.
func mustManifest(t *testing.T, e *env, name, mediaType string, children ...v1.Hash) v1.Hash {
	t.Helper()
	b, d := content(name, 50)
	ctx := t.Context()
	if err := commit(ctx, e.blobs, d, b); err != nil {
		t.Fatalf("commit manifest %s: %v", name, err)
	}
	if err := e.meta.PutManifest(ctx, repo, metadata.Manifest{Digest: d, MediaType: mediaType, Size: int64(len(b))}); err != nil {
		t.Fatalf("PutManifest %s: %v", name, err)
	}
	if err := e.meta.SetReferences(ctx, d, children); err != nil {
		t.Fatalf("SetReferences %s: %v", name, err)
	}
	return d
}

func mustTouch(t *testing.T, meta metadata.Evictor, d v1.Hash, at time.Time) {
	t.Helper()
	if err := meta.Touch(t.Context(), d, at); err != nil {
		t.Fatalf("Touch: %v", err)
	}
}

// recorded lists every recorded object (manifests and blobs), least recently used first:
// with nothing protected, EvictionCandidates is a full scan.
func recorded(t *testing.T, meta metadata.Evictor) []metadata.Candidate {
	t.Helper()
	never := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	all, err := meta.EvictionCandidates(t.Context(), never, 1<<30)
	if err != nil {
		t.Fatalf("listing rows: %v", err)
	}
	return all
}

func isRecorded(t *testing.T, meta metadata.Evictor, d v1.Hash) bool {
	t.Helper()
	_, err := meta.LastAccess(t.Context(), d)
	if err != nil && !errors.Is(err, metadata.ErrNotFound) {
		t.Fatalf("LastAccess: %v", err)
	}
	return err == nil
}

func isStored(t *testing.T, blobs blobstore.Store, d v1.Hash) bool {
	t.Helper()
	_, err := blobs.Stat(t.Context(), d)
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat: %v", err)
	}
	return err == nil
}

// assertNoDanglingRows scans every row and stats its object: a row without its object is
// the one state eviction must never leave behind.
func assertNoDanglingRows(t *testing.T, e *env) {
	t.Helper()
	var sum int64
	for _, c := range recorded(t, e.meta) {
		sum += c.Size
		size, err := e.blobs.Stat(t.Context(), c.Digest)
		switch {
		case errors.Is(err, blobstore.ErrNotFound):
			t.Errorf("dangling row: %s %s is recorded but its object is missing", c.Kind, c.Digest)
		case err != nil:
			t.Fatalf("Stat(%s): %v", c.Digest, err)
		case size != c.Size:
			t.Errorf("%s %s is recorded with size %d, its object has %d", c.Kind, c.Digest, c.Size, size)
		}
	}
	total, err := e.meta.TotalSize(t.Context())
	if err != nil {
		t.Fatalf("TotalSize: %v", err)
	}
	if total != sum {
		t.Errorf("TotalSize = %d, the rows add up to %d", total, sum)
	}
}

func names(ds []v1.Hash, byDigest map[v1.Hash]string) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = byDigest[d]
	}
	return fmt.Sprint(out)
}

// readAll reads the whole object.
func readAll(ctx context.Context, blobs blobstore.Store, d v1.Hash) ([]byte, error) {
	rc, err := blobs.Open(ctx, d, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
