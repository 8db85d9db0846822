// Package pgtest gives tests their own Postgres schema on the server named by
// HUBCACHE_TEST_POSTGRES, so tests sharing one database never see each other's rows.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hubcache/hubcache/test/testenv"
)

// DefaultDSN is the Postgres used when HUBCACHE_TEST_POSTGRES is unset: the local server
// with trust auth that hack/tools.sh starts.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

const howToGet = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

// BaseDSN returns HUBCACHE_TEST_POSTGRES, or DefaultDSN when it is unset.
func BaseDSN() string {
	if v := os.Getenv("HUBCACHE_TEST_POSTGRES"); v != "" {
		return v
	}
	return DefaultDSN
}

// Schema creates a schema named prefix plus a random suffix, drops it when the test ends,
// and returns a DSN whose search_path selects it, with the schema's name. A missing server
// skips the test on a developer machine and fails it in CI (testenv.Missing).
func Schema(t testing.TB, prefix string) (dsn, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, BaseDSN())
	if err != nil {
		testenv.Missing(t, "Postgres", howToGet)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema = prefix + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		// The test's context is already done here: the drop gets its own.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, BaseDSN())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return WithParams(t, BaseDSN(), map[string]string{"search_path": schema}), schema
}

// WithParams adds parameters to a URL or key=value DSN.
func WithParams(t testing.TB, dsn string, params map[string]string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("HUBCACHE_TEST_POSTGRES is not a valid postgres:// URL")
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for k, v := range params {
		dsn += fmt.Sprintf(" %s=%s", k, v)
	}
	return dsn
}
