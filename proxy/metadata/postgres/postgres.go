// Package postgres is the production metadata store, shared by every proxy replica. It uses a
// pgx connection pool; schema migrations are embedded and applied under an advisory lock so
// that replicas starting together migrate once. Every operation is idempotent, so one that
// fails because its pooled connection died (server restart, pg_terminate_backend, failover)
// is retried on a fresh connection: the store recovers without a restart.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/internal/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the first half of the advisory lock key taken while migrating; the
// second half is derived from the schema, so stores in different schemas do not wait for
// each other.
const migrationLockKey int32 = 0x68756263 // "hubc"

// Store is a metadata.Store backed by Postgres.
type Store struct {
	pool     *pgxpool.Pool
	logger   *slog.Logger
	attempts int
}

var _ metadata.Store = (*Store)(nil)

type config struct {
	logger          *slog.Logger
	maxConns        int32
	minConns        int32
	maxConnLifetime time.Duration
	maxConnIdleTime time.Duration
	healthCheck     time.Duration
	connectTimeout  time.Duration
}

// Option configures a Store. Zero values keep pgx's defaults (or the DSN's pool_* settings).
type Option func(*config)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithMaxConns sets the largest number of connections in the pool.
func WithMaxConns(n int32) Option { return func(c *config) { c.maxConns = n } }

// WithMinConns sets how many connections the pool keeps open when idle.
func WithMinConns(n int32) Option { return func(c *config) { c.minConns = n } }

// WithMaxConnLifetime closes connections older than d (spreads load after a failover).
func WithMaxConnLifetime(d time.Duration) Option { return func(c *config) { c.maxConnLifetime = d } }

// WithMaxConnIdleTime closes connections idle for longer than d.
func WithMaxConnIdleTime(d time.Duration) Option { return func(c *config) { c.maxConnIdleTime = d } }

// WithHealthCheckPeriod sets how often idle connections are checked.
func WithHealthCheckPeriod(d time.Duration) Option { return func(c *config) { c.healthCheck = d } }

// WithConnectTimeout bounds how long opening one connection may take.
func WithConnectTimeout(d time.Duration) Option { return func(c *config) { c.connectTimeout = d } }

// New connects to the database named by dsn (a postgres:// URL or key=value string; its
// search_path selects the schema), applies pending migrations and returns the store.
func New(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	c := config{logger: slog.Default()}
	for _, o := range opts {
		o(&c)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// Not wrapped: the parse error quotes the DSN, which may carry a password.
		return nil, errors.New("postgres metadata: cannot parse the DSN (want postgres://USER[:PASSWORD]@HOST:PORT/DB?OPTIONS; not shown, it may contain a password)")
	}
	if c.maxConns > 0 {
		pc.MaxConns = c.maxConns
	}
	if c.minConns > 0 {
		pc.MinConns = c.minConns
	}
	if c.maxConnLifetime > 0 {
		pc.MaxConnLifetime = c.maxConnLifetime
	}
	if c.maxConnIdleTime > 0 {
		pc.MaxConnIdleTime = c.maxConnIdleTime
	}
	if c.healthCheck > 0 {
		pc.HealthCheckPeriod = c.healthCheck
	}
	if c.connectTimeout > 0 {
		pc.ConnConfig.ConnectTimeout = c.connectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres metadata: create pool: %w", err)
	}
	s := &Store{pool: pool, logger: c.logger, attempts: int(pc.MaxConns) + 1}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres metadata: %w", err)
	}
	return s, nil
}

// migrate applies the embedded migrations not yet in schema_migrations. The session-level
// advisory lock makes concurrent replicas take turns: the first applies, the others then see
// nothing left to do. Each migration runs in its own transaction with its version row.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrate.Load(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	const lockArgs = `$1, hashtext(COALESCE(current_schema(), ''))`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+lockArgs+`)`, migrationLockKey); err != nil {
		conn.Release()
		return fmt.Errorf("migrate: take lock: %w", err)
	}
	defer func() {
		// If unlocking fails, closing the session releases the lock.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+lockArgs+`)`, migrationLockKey); err != nil {
			_ = conn.Hijack().Close(context.WithoutCancel(ctx))
			return
		}
		conn.Release()
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if current > len(ms) {
		// Migrations only add, so an older replica keeps working during a rolling upgrade.
		s.logger.Warn("metadata schema is newer than this binary", "schema_version", current, "known", len(ms))
	}
	for _, m := range ms[min(current, len(ms)):] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		s.logger.Info("applied metadata migration", "migration", m.Name)
	}
	return nil
}

// retry runs op again when it failed because its connection broke, up to once per pooled
// connection plus one, so even a pool full of dead connections ends on a fresh one. Every
// operation of this store is idempotent, so running it twice is harmless.
func (s *Store) retry(ctx context.Context, op func() error) error {
	var err error
	for i := 0; i < s.attempts; i++ {
		err = op()
		if err == nil || !connectionBroken(ctx, err) {
			return err
		}
		s.logger.Debug("retrying metadata operation on a fresh connection", "attempt", i+1, "error", err)
	}
	return err
}

// connectionBroken reports whether err says the connection (not the statement) failed.
func connectionBroken(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, pgx.ErrNoRows) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown / terminated
			return true
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08": // connection exception
			return true
		}
		return false
	}
	// Not a server error: a network failure, EOF on a dead socket, or a failure to connect.
	return true
}

func notFound(what string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, metadata.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// GetTag returns the tag's last resolution in repo.
func (s *Store) GetTag(ctx context.Context, repo, tag string) (metadata.Tag, error) {
	var digest string
	var checked time.Time
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT digest, checked_at FROM tags WHERE repository = $1 AND tag = $2`,
			repo, tag).Scan(&digest, &checked)
	})
	if err != nil {
		return metadata.Tag{}, notFound(fmt.Sprintf("get tag %s:%s", repo, tag), err)
	}
	d, err := v1.NewHash(digest)
	if err != nil {
		return metadata.Tag{}, fmt.Errorf("get tag %s:%s: stored digest %q: %w", repo, tag, digest, err)
	}
	return metadata.Tag{Digest: d, CheckedAt: checked.UTC()}, nil
}

// PutTag records or replaces the tag's resolution.
func (s *Store) PutTag(ctx context.Context, repo, tag string, t metadata.Tag) error {
	if err := metadata.CheckTag(repo, tag, t); err != nil {
		return fmt.Errorf("put tag %s:%s: %w", repo, tag, err)
	}
	err := s.retry(ctx, func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO tags (repository, tag, digest, checked_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, checked_at = excluded.checked_at`,
			repo, tag, t.Digest.String(), t.CheckedAt.UTC())
		return err
	})
	if err != nil {
		return fmt.Errorf("put tag %s:%s: %w", repo, tag, err)
	}
	return nil
}

// GetManifest returns the manifest if it is linked to repo.
func (s *Store) GetManifest(ctx context.Context, repo string, d v1.Hash) (metadata.Manifest, error) {
	m := metadata.Manifest{Digest: d}
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT m.media_type, m.size FROM manifest_links l
			JOIN manifests m ON m.digest = l.digest WHERE l.repository = $1 AND l.digest = $2`,
			repo, d.String()).Scan(&m.MediaType, &m.Size)
	})
	if err != nil {
		return metadata.Manifest{}, notFound(fmt.Sprintf("get manifest %s@%s", repo, d), err)
	}
	return m, nil
}

// PutManifest records the manifest and links it to repo. The upsert (rather than DO NOTHING)
// locks the object row, so a concurrent Forget cannot delete it between the two inserts.
func (s *Store) PutManifest(ctx context.Context, repo string, m metadata.Manifest) error {
	if err := metadata.CheckManifest(repo, m); err != nil {
		return fmt.Errorf("put manifest %s@%s: %w", repo, m.Digest, err)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO manifests (digest, media_type, size, last_access) VALUES ($1, $2, $3, $4)
			ON CONFLICT (digest) DO UPDATE SET media_type = excluded.media_type, size = excluded.size,
				last_access = GREATEST(manifests.last_access, excluded.last_access)`,
			m.Digest.String(), m.MediaType, m.Size, time.Now().UTC()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO manifest_links (repository, digest) VALUES ($1, $2)
			ON CONFLICT DO NOTHING`, repo, m.Digest.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("put manifest %s@%s: %w", repo, m.Digest, err)
	}
	return nil
}

// GetBlob returns the blob if it is linked to repo.
func (s *Store) GetBlob(ctx context.Context, repo string, d v1.Hash) (metadata.Blob, error) {
	b := metadata.Blob{Digest: d}
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT b.size FROM blob_links l
			JOIN blobs b ON b.digest = l.digest WHERE l.repository = $1 AND l.digest = $2`,
			repo, d.String()).Scan(&b.Size)
	})
	if err != nil {
		return metadata.Blob{}, notFound(fmt.Sprintf("get blob %s@%s", repo, d), err)
	}
	return b, nil
}

// PutBlob records the blob and links it to repo (locking the row like PutManifest).
func (s *Store) PutBlob(ctx context.Context, repo string, b metadata.Blob) error {
	if err := metadata.CheckBlob(repo, b); err != nil {
		return fmt.Errorf("put blob %s@%s: %w", repo, b.Digest, err)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO blobs (digest, size, last_access) VALUES ($1, $2, $3)
			ON CONFLICT (digest) DO UPDATE SET size = excluded.size,
				last_access = GREATEST(blobs.last_access, excluded.last_access)`,
			b.Digest.String(), b.Size, time.Now().UTC()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO blob_links (repository, digest) VALUES ($1, $2)
			ON CONFLICT DO NOTHING`, repo, b.Digest.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("put blob %s@%s: %w", repo, b.Digest, err)
	}
	return nil
}

// Forget removes every record of d. Links go with their object (ON DELETE CASCADE).
func (s *Store) Forget(ctx context.Context, d v1.Hash) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error { return forget(ctx, tx, d) })
	if err != nil {
		return fmt.Errorf("forget %s: %w", d, err)
	}
	return nil
}

func forget(ctx context.Context, tx pgx.Tx, d v1.Hash) error {
	for _, q := range []string{
		`DELETE FROM tags WHERE digest = $1`,
		`DELETE FROM manifests WHERE digest = $1`,
		`DELETE FROM blobs WHERE digest = $1`,
	} {
		if _, err := tx.Exec(ctx, q, d.String()); err != nil {
			return err
		}
	}
	return nil
}

// Ping checks that the database answers, on a fresh connection if a pooled one is dead.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.retry(ctx, func() error { return s.pool.Ping(ctx) }); err != nil {
		return fmt.Errorf("postgres metadata: ping: %w", err)
	}
	return nil
}

// Close closes every connection of the pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.retry(ctx, func() error { return pgx.BeginFunc(ctx, s.pool, fn) })
}

// GetVisibility returns the last recorded visibility of repo.
func (s *Store) GetVisibility(ctx context.Context, repo string) (metadata.RepositoryVisibility, error) {
	var vis string
	var checked time.Time
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT visibility, checked_at FROM repository_visibility WHERE repository = $1`,
			repo).Scan(&vis, &checked)
	})
	if err != nil {
		return metadata.RepositoryVisibility{}, notFound("get visibility of "+repo, err)
	}
	return metadata.RepositoryVisibility{Visibility: metadata.Visibility(vis), CheckedAt: checked.UTC()}, nil
}

// PutVisibility records or replaces the visibility of repo.
func (s *Store) PutVisibility(ctx context.Context, repo string, v metadata.RepositoryVisibility) error {
	if err := metadata.CheckVisibility(repo, v); err != nil {
		return fmt.Errorf("put visibility of %s: %w", repo, err)
	}
	err := s.retry(ctx, func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO repository_visibility (repository, visibility, checked_at) VALUES ($1, $2, $3)
			ON CONFLICT (repository) DO UPDATE SET visibility = excluded.visibility, checked_at = excluded.checked_at`,
			repo, string(v.Visibility), v.CheckedAt.UTC())
		return err
	})
	if err != nil {
		return fmt.Errorf("put visibility of %s: %w", repo, err)
	}
	return nil
}
