package pglock_test

import (
	"strings"
	"testing"

	"github.com/hubcache/hubcache/proxy/evict/pglock"
	"github.com/hubcache/hubcache/test/pgtest"
)

// schemaDSN returns a DSN selecting a fresh schema, dropped when the test ends.
func schemaDSN(t *testing.T) string {
	t.Helper()
	dsn, _ := pgtest.Schema(t, "hubcache_pglock_test_")
	// The store's pool settings must not reach the server.
	return pgtest.WithParams(t, dsn, map[string]string{"pool_max_conns": "2"})
}

func mustNew(t *testing.T, dsn string) *pglock.Locker {
	t.Helper()
	l, err := pglock.New(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestOneEvictorAtATimePerSchema(t *testing.T) {
	dsn := schemaDSN(t)
	a, b := mustNew(t, dsn), mustNew(t, dsn)
	ctx := t.Context()

	release, ok, err := a.TryEvictionLock(ctx)
	if err != nil || !ok {
		t.Fatalf("first TryEvictionLock = %v, %v; want the lock", ok, err)
	}
	if _, ok, err := b.TryEvictionLock(ctx); err != nil || ok {
		t.Fatalf("second TryEvictionLock while held = %v, %v; want refused", ok, err)
	}
	// Another installation, in another schema of the same database, is not blocked.
	other := mustNew(t, schemaDSN(t))
	if rel, ok, err := other.TryEvictionLock(ctx); err != nil || !ok {
		t.Errorf("a lock in another schema = %v, %v; want it taken", ok, err)
	} else {
		rel()
	}
	release()
	rel, ok, err := b.TryEvictionLock(ctx)
	if err != nil || !ok {
		t.Fatalf("TryEvictionLock after release = %v, %v; want the lock", ok, err)
	}
	rel()
}

func TestABadDSNIsRefusedWithoutEchoingIt(t *testing.T) {
	_, err := pglock.New("postgres://user:s3cret@host:notaport/db")
	if err == nil {
		t.Fatal("New accepted a bad DSN")
	}
	if got := err.Error(); strings.Contains(got, "s3cret") {
		t.Errorf("error %q echoes the password", got)
	}
}

func TestAnUnreachableServerIsAnError(t *testing.T) {
	l := mustNew(t, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	if _, ok, err := l.TryEvictionLock(t.Context()); err == nil || ok {
		t.Errorf("TryEvictionLock = %v, %v; want an error", ok, err)
	}
}
