package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/metadatatest"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
	_ "modernc.org/sqlite"
)

func newStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.New(t.Context(), path)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	metadatatest.Run(t, func(t *testing.T) metadata.Store {
		return newStore(t, filepath.Join(t.TempDir(), "meta.db"))
	})
}

func TestMigrationsAreRecordedAndRunOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	first := newStore(t, path)
	d := metadatatest.Digest("x")
	if err := first.PutBlob(t.Context(), "docker.io/library/a", metadata.Blob{Digest: d, Size: 1}); err != nil {
		t.Fatal(err)
	}
	first.Close()

	// Reopening keeps the data and applies nothing twice.
	second := newStore(t, path)
	if _, err := second.GetBlob(t.Context(), "docker.io/library/a", d); err != nil {
		t.Errorf("data lost on reopen: %v", err)
	}
	second.Close()

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, distinct int
	if err := db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n == 0 || n != distinct {
		t.Errorf("schema_migrations has %d rows for %d versions", n, distinct)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

func TestStoresOpeningOneFileAtOnceAllSucceed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := sqlite.New(t.Context(), path)
			if err == nil {
				err = s.PutTag(t.Context(), "docker.io/library/a", "latest",
					metadata.Tag{Digest: metadatatest.Digest("a")})
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store #%d: %v", i, err)
		}
	}
}

func TestNewRejectsPathsThatAreNotPlainFiles(t *testing.T) {
	for _, p := range []string{"", "meta.db?mode=ro", "file:meta.db"} {
		if _, err := sqlite.New(context.Background(), p); err == nil {
			t.Errorf("New(%q) succeeded, want an error", p)
		}
	}
}

func TestAClosedStoreFailsCleanly(t *testing.T) {
	s := newStore(t, filepath.Join(t.TempDir(), "meta.db"))
	s.Close()
	_, err := s.GetTag(t.Context(), "docker.io/library/a", "latest")
	if err == nil || errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("GetTag on a closed store: error = %v, want a non-NotFound error", err)
	}
}

func TestEvictorConformance(t *testing.T) {
	metadatatest.RunEvictor(t, func(t *testing.T) metadatatest.EvictingStore {
		return newStore(t, filepath.Join(t.TempDir(), "meta.db"))
	})
}
