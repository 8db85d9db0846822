// Package sqlite is the embedded metadata store: one SQLite file, pure Go (modernc.org/sqlite,
// no cgo), in WAL mode so readers never wait for the writer. Every write transaction starts
// IMMEDIATE and waits up to the busy timeout for the write lock, so concurrent writers (also in
// other processes sharing the file) queue instead of failing with SQLITE_BUSY.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/internal/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Defaults for the options.
const (
	DefaultBusyTimeout  = 10 * time.Second
	DefaultMaxOpenConns = 8
)

// Store is a metadata.Store backed by a SQLite file.
type Store struct {
	db           *sql.DB
	logger       *slog.Logger
	busyTimeout  time.Duration
	maxOpenConns int
	st           statements
}

// statements are the pull path's queries, prepared once. The driver keeps no statement cache:
// unprepared, every query was parsed and planned again, which took as long as running it
// (docs/bench.md, rows 05 and 14). database/sql prepares each on a connection the first time
// it runs there and keeps it.
type statements struct {
	getTag, putTag, getManifest, getBlob, getVisibility *sql.Stmt
	touchManifest, touchBlob                            *sql.Stmt
}

// prepare prepares the statements; the tables exist (migrate ran).
func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		into **sql.Stmt
		sql  string
	}{
		{&s.st.getTag, `SELECT digest, checked_at FROM tags WHERE repository = ? AND tag = ?`},
		{&s.st.putTag, `INSERT INTO tags (repository, tag, digest, checked_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (repository, tag) DO UPDATE SET digest = excluded.digest, checked_at = excluded.checked_at`},
		{&s.st.getManifest, `SELECT m.media_type, m.size FROM manifest_links l
			JOIN manifests m ON m.digest = l.digest WHERE l.repository = ? AND l.digest = ?`},
		{&s.st.getBlob, `SELECT b.size FROM blob_links l
			JOIN blobs b ON b.digest = l.digest WHERE l.repository = ? AND l.digest = ?`},
		{&s.st.getVisibility, `SELECT visibility, checked_at FROM repository_visibility WHERE repository = ?`},
		{&s.st.touchManifest, `UPDATE manifests SET last_access = max(last_access, ?1) WHERE digest = ?2`},
		{&s.st.touchBlob, `UPDATE blobs SET last_access = max(last_access, ?1) WHERE digest = ?2`},
	} {
		st, err := s.db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		*p.into = st
	}
	return nil
}

var _ metadata.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.logger = l } }

// WithBusyTimeout sets how long a statement waits for a lock held by another connection.
func WithBusyTimeout(d time.Duration) Option { return func(s *Store) { s.busyTimeout = d } }

// WithMaxOpenConns sets the size of the connection pool (readers run in parallel in WAL mode).
func WithMaxOpenConns(n int) Option { return func(s *Store) { s.maxOpenConns = n } }

// New opens (creating if needed) the database file at path and applies pending migrations.
func New(ctx context.Context, path string, opts ...Option) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite metadata: invalid database path %q (want a plain file path)", path)
	}
	s := &Store{logger: slog.Default(), busyTimeout: DefaultBusyTimeout, maxOpenConns: DefaultMaxOpenConns}
	for _, o := range opts {
		o(s)
	}
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(s.busyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "1")
	// NORMAL is durable across application crashes in WAL mode; only a power loss can drop the
	// last transactions, which the cache heals by refetching.
	q.Set("_synchronous", "NORMAL")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite metadata: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(s.maxOpenConns)
	db.SetMaxIdleConns(s.maxOpenConns)
	s.db = db
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite metadata %s: %w", path, err)
	}
	if err := s.prepare(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("sqlite metadata %s: %w", path, err)
	}
	return s, nil
}

// migrate applies every embedded migration not yet recorded in schema_migrations, in one
// IMMEDIATE transaction: a second process starting at the same time waits, then finds
// nothing left to do.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrate.Load(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if current > len(ms) {
		// Migrations only add, so an older binary still works on a newer schema.
		s.logger.Warn("metadata schema is newer than this binary", "schema_version", current, "known", len(ms))
	}
	for _, m := range ms[min(current, len(ms)):] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("migrate: record %s: %w", m.Name, err)
		}
		s.logger.Info("applied metadata migration", "migration", m.Name)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

func notFound(what string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, metadata.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func parseDigest(s string) (v1.Hash, error) {
	d, err := v1.NewHash(s)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("stored digest %q: %w", s, err)
	}
	return d, nil
}

// GetTag returns the tag's last resolution in repo.
func (s *Store) GetTag(ctx context.Context, repo, tag string) (metadata.Tag, error) {
	var digest string
	var checked int64
	err := s.st.getTag.QueryRowContext(ctx, repo, tag).Scan(&digest, &checked)
	if err != nil {
		return metadata.Tag{}, notFound(fmt.Sprintf("get tag %s:%s", repo, tag), err)
	}
	d, err := parseDigest(digest)
	if err != nil {
		return metadata.Tag{}, err
	}
	return metadata.Tag{Digest: d, CheckedAt: time.UnixMicro(checked).UTC()}, nil
}

// PutTag records or replaces the tag's resolution.
func (s *Store) PutTag(ctx context.Context, repo, tag string, t metadata.Tag) error {
	if err := metadata.CheckTag(repo, tag, t); err != nil {
		return fmt.Errorf("put tag %s:%s: %w", repo, tag, err)
	}
	_, err := s.st.putTag.ExecContext(ctx, repo, tag, t.Digest.String(), t.CheckedAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("put tag %s:%s: %w", repo, tag, err)
	}
	return nil
}

// GetManifest returns the manifest if it is linked to repo.
func (s *Store) GetManifest(ctx context.Context, repo string, d v1.Hash) (metadata.Manifest, error) {
	m := metadata.Manifest{Digest: d}
	err := s.st.getManifest.QueryRowContext(ctx, repo, d.String()).Scan(&m.MediaType, &m.Size)
	if err != nil {
		return metadata.Manifest{}, notFound(fmt.Sprintf("get manifest %s@%s", repo, d), err)
	}
	return m, nil
}

// PutManifest records the manifest and links it to repo.
func (s *Store) PutManifest(ctx context.Context, repo string, m metadata.Manifest) error {
	if err := metadata.CheckManifest(repo, m); err != nil {
		return fmt.Errorf("put manifest %s@%s: %w", repo, m.Digest, err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO manifests (digest, media_type, size, last_access) VALUES (?, ?, ?, ?)
			ON CONFLICT (digest) DO UPDATE SET media_type = excluded.media_type, size = excluded.size,
				last_access = max(last_access, excluded.last_access)`,
			m.Digest.String(), m.MediaType, m.Size, time.Now().UnixMicro()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO manifest_links (repository, digest) VALUES (?, ?)
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
	err := s.st.getBlob.QueryRowContext(ctx, repo, d.String()).Scan(&b.Size)
	if err != nil {
		return metadata.Blob{}, notFound(fmt.Sprintf("get blob %s@%s", repo, d), err)
	}
	return b, nil
}

// PutBlob records the blob and links it to repo.
func (s *Store) PutBlob(ctx context.Context, repo string, b metadata.Blob) error {
	if err := metadata.CheckBlob(repo, b); err != nil {
		return fmt.Errorf("put blob %s@%s: %w", repo, b.Digest, err)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO blobs (digest, size, last_access) VALUES (?, ?, ?)
			ON CONFLICT (digest) DO UPDATE SET size = excluded.size, last_access = max(last_access, excluded.last_access)`,
			b.Digest.String(), b.Size, time.Now().UnixMicro()); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO blob_links (repository, digest) VALUES (?, ?)
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
	err := s.inTx(ctx, func(tx *sql.Tx) error { return forget(ctx, tx, d) })
	if err != nil {
		return fmt.Errorf("forget %s: %w", d, err)
	}
	return nil
}

func forget(ctx context.Context, tx *sql.Tx, d v1.Hash) error {
	for _, q := range []string{
		`DELETE FROM tags WHERE digest = ?`,
		`DELETE FROM manifests WHERE digest = ?`,
		`DELETE FROM blobs WHERE digest = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, d.String()); err != nil {
			return err
		}
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite metadata: ping: %w", err)
	}
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite metadata: ping: %w", err)
	}
	return nil
}

// Close closes the statements and the database.
func (s *Store) Close() error {
	for _, st := range []*sql.Stmt{s.st.getTag, s.st.putTag, s.st.getManifest, s.st.getBlob,
		s.st.getVisibility, s.st.touchManifest, s.st.touchBlob} {
		if st != nil {
			_ = st.Close()
		}
	}
	return s.db.Close()
}

func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// GetVisibility returns the last recorded visibility of repo.
func (s *Store) GetVisibility(ctx context.Context, repo string) (metadata.RepositoryVisibility, error) {
	var vis string
	var checked int64
	err := s.st.getVisibility.QueryRowContext(ctx, repo).Scan(&vis, &checked)
	if err != nil {
		return metadata.RepositoryVisibility{}, notFound("get visibility of "+repo, err)
	}
	return metadata.RepositoryVisibility{Visibility: metadata.Visibility(vis), CheckedAt: time.UnixMicro(checked).UTC()}, nil
}

// PutVisibility records or replaces the visibility of repo.
func (s *Store) PutVisibility(ctx context.Context, repo string, v metadata.RepositoryVisibility) error {
	if err := metadata.CheckVisibility(repo, v); err != nil {
		return fmt.Errorf("put visibility of %s: %w", repo, err)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO repository_visibility (repository, visibility, checked_at) VALUES (?, ?, ?)
		ON CONFLICT (repository) DO UPDATE SET visibility = excluded.visibility, checked_at = excluded.checked_at`,
		repo, string(v.Visibility), v.CheckedAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("put visibility of %s: %w", repo, err)
	}
	return nil
}
