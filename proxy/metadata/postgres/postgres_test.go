package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/metadatatest"
	"github.com/hubcache/hubcache/proxy/metadata/postgres"
	"github.com/hubcache/hubcache/test/pgtest"
)

// freshSchema creates a schema with a random name, drops it when the test ends, and returns a
// DSN whose search_path selects it; the schema's name is also the connection's
// application_name, so a test can find its own sessions in pg_stat_activity.
func freshSchema(t *testing.T) (dsn, schema string) {
	t.Helper()
	dsn, schema = pgtest.Schema(t, "hubcache_test_")
	return pgtest.WithParams(t, dsn, map[string]string{"application_name": schema}), schema
}
func newStore(t *testing.T, dsn string, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	// A small pool: the conformance subtests run in parallel, each with its own store.
	opts = append([]postgres.Option{postgres.WithMaxConns(3)}, opts...)
	s, err := postgres.New(t.Context(), dsn, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	metadatatest.Run(t, func(t *testing.T) metadata.Store {
		dsn, _ := freshSchema(t)
		return newStore(t, dsn)
	})
}

func TestReplicasMigratingOneFreshSchemaAtOnceAllSucceed(t *testing.T) {
	dsn, schema := freshSchema(t)
	const replicas = 4
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, replicas)
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Go(func() {
			stores[i], errs[i] = postgres.New(t.Context(), dsn, postgres.WithMaxConns(2))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica #%d: New: %v", i, err)
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	d := metadatatest.Digest("shared")
	if err := stores[0].PutBlob(t.Context(), "docker.io/library/a", metadata.Blob{Digest: d, Size: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[replicas-1].GetBlob(t.Context(), "docker.io/library/a", d); err != nil {
		t.Errorf("a row written by one replica is not seen by another: %v", err)
	}

	c, err := pgx.Connect(t.Context(), pgtest.BaseDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var rows, versions int
	if err := c.QueryRow(t.Context(), fmt.Sprintf(
		"SELECT COUNT(*), COUNT(DISTINCT version) FROM %s.schema_migrations", schema)).Scan(&rows, &versions); err != nil {
		t.Fatal(err)
	}
	if rows == 0 || rows != versions {
		t.Errorf("schema_migrations has %d rows for %d versions: a migration ran twice or not at all", rows, versions)
	}
}

func TestTheStoreRecoversWhenItsConnectionsAreKilled(t *testing.T) {
	dsn, appName := freshSchema(t)
	s := newStore(t, dsn, postgres.WithMaxConns(4))
	ctx := t.Context()
	repo := "docker.io/library/a"
	d := metadatatest.Digest("before")
	if err := s.PutBlob(ctx, repo, metadata.Blob{Digest: d, Size: 1}); err != nil {
		t.Fatal(err)
	}
	// Warm several pooled connections so more than one dies.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { _, _ = s.GetBlob(ctx, repo, d) })
	}
	wg.Wait()

	admin, err := pgx.Connect(ctx, pgtest.BaseDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var killed int
	if err := admin.QueryRow(ctx, `SELECT COUNT(*) FROM (
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k`,
		appName).Scan(&killed); err != nil {
		t.Fatalf("terminate backends: %v", err)
	}
	if killed == 0 {
		t.Fatal("no backend of the store was found to kill")
	}
	t.Logf("terminated %d backends", killed)

	// Every call right after the kill succeeds: dead connections are replaced, not reported.
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after the kill: %v", err)
	}
	if _, err := s.GetBlob(ctx, repo, d); err != nil {
		t.Errorf("GetBlob after the kill: %v", err)
	}
	d2 := metadatatest.Digest("after")
	if err := s.PutBlob(ctx, repo, metadata.Blob{Digest: d2, Size: 2}); err != nil {
		t.Errorf("PutBlob after the kill: %v", err)
	}
	if _, err := s.GetBlob(ctx, repo, d2); err != nil {
		t.Errorf("GetBlob of a row written after the kill: %v", err)
	}
}

func TestNewFailsClearlyWithoutAServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback refuses connections at once.
	_, err := postgres.New(ctx, "postgres://u:secret@127.0.0.1:1/db?sslmode=disable",
		postgres.WithConnectTimeout(2*time.Second))
	if err == nil {
		t.Fatal("New succeeded without a server")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error reveals the password: %v", err)
	}
}

func TestNewRejectsAnInvalidDSNWithoutEchoingIt(t *testing.T) {
	_, err := postgres.New(t.Context(), "postgres://u:secret@[bad/db")
	if err == nil {
		t.Fatal("New succeeded with an invalid DSN")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error reveals the password: %v", err)
	}
}

func TestEvictorConformance(t *testing.T) {
	metadatatest.RunEvictor(t, func(t *testing.T) metadatatest.EvictingStore {
		dsn, _ := freshSchema(t)
		return newStore(t, dsn)
	})
}
