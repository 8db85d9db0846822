package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/blobstore/s3"
	"github.com/hubcache/hubcache/proxy/evict"
	"github.com/hubcache/hubcache/proxy/evict/pglock"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/postgres"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
)

// PostgresPool holds the pool settings of a postgres:// metadata store; zero fields keep
// pgx's defaults (or the DSN's pool_* parameters).
type PostgresPool struct {
	MaxConns        int32
	MinConns        int32
	MaxConnLifetime time.Duration
	MaxConnIdleTime time.Duration
	HealthCheck     time.Duration
	ConnectTimeout  time.Duration
}

// Eviction configures the size budget. MaxSize 0 (the zero value) turns eviction off.
type Eviction struct {
	MaxSize   int64
	Retention time.Duration // 0: evict.DefaultRetention
	Interval  time.Duration // 0: evict.DefaultInterval
}

// WithBlobStoreURL opens the blob store named by u (contract of --blob-store):
// file://DIR, or s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path-style=true with credentials
// from the standard AWS chain. Empty: files under the data directory. WithBlobStore wins.
func WithBlobStoreURL(u string) Option { return func(o *options) { o.blobURL = u } }

// WithMetadataURL opens the metadata store named by u (contract of --metadata):
// sqlite://PATH or postgres://… (postgresql:// too). Empty: SQLite under the data directory.
// WithMetadataStore wins.
func WithMetadataURL(u string) Option { return func(o *options) { o.metaURL = u } }

// WithPostgresPool sets the pool of a postgres:// metadata store.
func WithPostgresPool(p PostgresPool) Option { return func(o *options) { o.pgPool = p } }

// WithEviction keeps the cache under a size budget (see docs/storage.md "Eviction"). With a
// postgres:// metadata store, one replica at a time runs a pass (advisory lock).
func WithEviction(e Eviction) Option { return func(o *options) { o.eviction = e } }

// WithS3Redirect answers blob GETs for cached blobs with a 307 to a presigned URL valid for
// ttl, when the blob store can presign (s3). 0 (default) serves every byte through the proxy.
func WithS3Redirect(ttl time.Duration) Option { return func(o *options) { o.redirectTTL = ttl } }

// WithCleanupInterval sets how often abandoned multipart uploads are aborted, when the blob
// store supports it (default 10m; negative: never).
func WithCleanupInterval(d time.Duration) Option { return func(o *options) { o.cleanupEvery = d } }

// WithHealthInterval sets how often the stores are probed for hubcache_store_up (default 10s).
func WithHealthInterval(d time.Duration) Option { return func(o *options) { o.healthEvery = d } }

// validate refuses options that contradict each other or cannot work, so that every caller
// of New (the command and tests alike) gets the same checks.
func (o *options) validate() error {
	p := o.pgPool
	if p.MaxConns < 0 || p.MinConns < 0 || (p.MaxConns > 0 && p.MinConns > p.MaxConns) {
		return fmt.Errorf("postgres pool: max and min connections must be positive, min at most max (got min %d, max %d)", p.MinConns, p.MaxConns)
	}
	if o.redirectTTL < 0 {
		return fmt.Errorf("s3 redirect: the URL lifetime must be positive (got %s)", o.redirectTTL)
	}
	if o.redirectTTL > 0 && o.blobs == nil && !strings.HasPrefix(o.blobURL, "s3://") {
		return errors.New("s3 redirect needs an s3:// blob store")
	}
	e := o.eviction
	if e.MaxSize < 0 {
		return fmt.Errorf("eviction: the size budget must be positive (got %d)", e.MaxSize)
	}
	if e.MaxSize > 0 && (e.Retention < 0 || e.Interval < 0) {
		return errors.New("eviction: retention and interval must be positive")
	}
	return nil
}

// Defaults of the background tasks.
const (
	DefaultCleanupInterval = 10 * time.Minute
	DefaultHealthInterval  = 10 * time.Second
)

// cleaner is the optional blob store capability of aborting abandoned uploads (s3).
type cleaner interface {
	CleanupAbandoned(ctx context.Context, olderThan time.Duration) (int, error)
}

// openBlobStore returns the blob store for u and whether the Server owns it.
func openBlobStore(ctx context.Context, u, dataDir string, log *slog.Logger) (blobstore.Store, error) {
	switch {
	case u == "":
		return file.New(filepath.Join(dataDir, "blobs"), file.WithLogger(log))
	case strings.HasPrefix(u, "file://"):
		dir := strings.TrimPrefix(u, "file://")
		if dir == "" {
			return nil, errors.New("--blob-store file://DIR: no directory")
		}
		return file.New(dir, file.WithLogger(log))
	case strings.HasPrefix(u, "s3://"):
		cfg, err := s3.ParseURL(u)
		if err != nil {
			return nil, err
		}
		return s3.New(ctx, cfg, s3.WithLogger(log))
	default:
		return nil, errors.New("--blob-store: want file://DIR or s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path-style=true")
	}
}

// isPostgres reports whether u names a Postgres database.
func isPostgres(u string) bool {
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// openMetadata returns the metadata store for u. Errors never echo u: it may hold a password.
func openMetadata(ctx context.Context, u, dataDir string, pool PostgresPool, log *slog.Logger) (metadata.Store, error) {
	switch {
	case u == "":
		return sqlite.New(ctx, filepath.Join(dataDir, "metadata.db"), sqlite.WithLogger(log))
	case strings.HasPrefix(u, "sqlite://"):
		path := strings.TrimPrefix(u, "sqlite://")
		if path == "" {
			return nil, errors.New("--metadata sqlite://PATH: no path")
		}
		return sqlite.New(ctx, path, sqlite.WithLogger(log))
	case isPostgres(u):
		return postgres.New(ctx, u,
			postgres.WithLogger(log),
			postgres.WithMaxConns(pool.MaxConns),
			postgres.WithMinConns(pool.MinConns),
			postgres.WithMaxConnLifetime(pool.MaxConnLifetime),
			postgres.WithMaxConnIdleTime(pool.MaxConnIdleTime),
			postgres.WithHealthCheckPeriod(pool.HealthCheck),
			postgres.WithConnectTimeout(pool.ConnectTimeout),
		)
	default:
		return nil, errors.New("--metadata: want sqlite://PATH or postgres://USER[:PASSWORD]@HOST:PORT/DB?OPTIONS")
	}
}

// newEvictor builds the evictor, or nil when eviction is off.
func newEvictor(o *options, blobs blobstore.Store, meta metadata.Store) (*evict.Evictor, error) {
	if o.eviction.MaxSize <= 0 {
		return nil, nil
	}
	ev, ok := meta.(metadata.Evictor)
	if !ok {
		return nil, fmt.Errorf("eviction: the metadata store %T cannot list eviction candidates", meta)
	}
	opts := []evict.Option{evict.WithLogger(o.logger), evict.WithRegisterer(o.registry)}
	if o.eviction.Retention > 0 {
		opts = append(opts, evict.WithRetention(o.eviction.Retention))
	}
	if o.eviction.Interval > 0 {
		opts = append(opts, evict.WithInterval(o.eviction.Interval))
	}
	if isPostgres(o.metaURL) {
		l, err := pglock.New(o.metaURL)
		if err != nil {
			return nil, fmt.Errorf("eviction lock: %w", err)
		}
		opts = append(opts, evict.WithLocker(l))
	}
	return evict.New(blobs, ev, o.eviction.MaxSize, opts...), nil
}

// runCleanup aborts abandoned multipart uploads every interval until ctx ends. An upload is
// abandoned once it is older than the longest legitimate fill.
func runCleanup(ctx context.Context, c cleaner, every, olderThan time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := c.CleanupAbandoned(ctx, olderThan)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("cleaning up abandoned uploads failed", "aborted", n, "error", err.Error())
		case n > 0:
			log.Info("aborted abandoned uploads", "count", n)
		}
	}
}
