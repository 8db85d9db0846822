// Package fillcoord makes proxy replicas that share one Postgres database fetch each cold blob
// from upstream once: a replica takes a fill lease (a row in fill_leases) before it fetches;
// the others find the live lease and stream the bytes from its holder instead. The holder
// renews the lease while it fills and deletes it when it is done; a holder that dies stops
// renewing, the lease expires, and the next replica to ask takes it over. The same leases,
// keyed "manifest:…", let one replica fetch a cold manifest while the others wait for it in
// the shared metadata (cache.ManifestLeaser).
//
// A lease is an optimisation, never a correctness condition: every replica verifies the
// digest of whatever it serves or stores, so a lost or stolen lease costs at most one extra
// upstream fetch.
package fillcoord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultTTL is how long a lease lives without renewal. The holder renews it every TTL/3, so
// a live holder survives two missed renewals; a dead one blocks its followers for at most
// this long before one of them takes over.
const DefaultTTL = 15 * time.Second

// acquireQuery inserts the lease, or takes over one that has expired (or that this holder
// already has). No row comes back when another holder's lease is live.
const acquireQuery = `
INSERT INTO fill_leases (digest, holder, addr, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (digest) DO UPDATE
	SET holder = EXCLUDED.holder, addr = EXCLUDED.addr, expires_at = EXCLUDED.expires_at
	WHERE fill_leases.expires_at < now() OR fill_leases.holder = EXCLUDED.holder
RETURNING holder`

// Option configures a Coordinator.
type Option func(*Coordinator)

// WithTTL sets the lease lifetime (default DefaultTTL).
func WithTTL(d time.Duration) Option { return func(c *Coordinator) { c.ttl = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *Coordinator) { c.log = l } }

// WithMaxConns sets the size of the coordinator's connection pool (default 4).
func WithMaxConns(n int32) Option { return func(c *Coordinator) { c.maxConns = n } }

// Coordinator hands out fill leases for one replica.
type Coordinator struct {
	pool     *pgxpool.Pool
	holder   string
	addr     string
	ttl      time.Duration
	maxConns int32
	log      *slog.Logger

	// stop ends every renewal goroutine (Close); renewals counts them.
	ctx      context.Context
	stop     context.CancelFunc
	renewals sync.WaitGroup
}

// New connects to the database named by dsn (the metadata store's DSN: its search_path
// selects the schema), whose migrations must have run (postgres.New). holder names this replica
// uniquely (a restarted process must use a new name); addr is where the other replicas reach
// its fills (host:port).
func New(ctx context.Context, dsn, holder, addr string, opts ...Option) (*Coordinator, error) {
	if holder == "" || addr == "" {
		return nil, errors.New("fill coordinator: holder and address are required")
	}
	c := &Coordinator{holder: holder, addr: addr, ttl: DefaultTTL, maxConns: 4, log: slog.Default()}
	for _, o := range opts {
		o(c)
	}
	if c.ttl < time.Second {
		return nil, fmt.Errorf("fill coordinator: lease TTL %s is under one second", c.ttl)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// Not wrapped: the parse error quotes the DSN, which may carry a password.
		return nil, errors.New("fill coordinator: cannot parse the Postgres DSN (not shown, it may contain a password)")
	}
	pc.MaxConns = c.maxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("fill coordinator: create pool: %w", err)
	}
	c.pool = pool
	c.ctx, c.stop = context.WithCancel(context.Background())
	// The table is the metadata store's (migration 0003_fill_leases), created when the
	// Postgres metadata store is opened.
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('fill_leases') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		c.stop()
		pool.Close()
		if err == nil {
			err = errors.New("no table fill_leases: open the Postgres metadata store first (its migrations create it)")
		}
		return nil, fmt.Errorf("fill coordinator: %w", err)
	}
	// Leases of replicas that died are taken over when their digest is asked for again; the
	// rest would stay forever. Any replica starting sweeps them.
	if _, err := pool.Exec(ctx, `DELETE FROM fill_leases WHERE expires_at < now() - interval '1 hour'`); err != nil {
		c.log.Warn("sweeping old fill leases failed", "error", err.Error())
	}
	return c, nil
}

// Close stops renewing the leases still held (they expire by themselves, as a dead
// replica's do), waits for the renewals to end, and closes the connection pool.
func (c *Coordinator) Close() {
	c.stop()
	c.renewals.Wait()
	c.pool.Close()
}

// Addr is the address this replica advertises to the others.
func (c *Coordinator) Addr() string { return c.addr }

// Acquire takes the lease on digest. When it succeeds, release is non-nil: the lease is
// renewed in the background until release is called (which deletes it). When another
// replica's lease is live, release is nil and holderAddr is where that replica serves the
// fill. An error means the database could not be asked; the caller decides whether to fill
// uncoordinated.
func (c *Coordinator) Acquire(ctx context.Context, digest string) (release func(), holderAddr string, err error) {
	for range 3 {
		var got string
		err := c.pool.QueryRow(ctx, acquireQuery, digest, c.holder, c.addr, c.ttl.Seconds()).Scan(&got)
		if err == nil {
			return c.hold(digest), "", nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, "", fmt.Errorf("fill lease %s: %w", digest, err)
		}
		var addr string
		err = c.pool.QueryRow(ctx, `SELECT addr FROM fill_leases WHERE digest = $1 AND expires_at >= now()`, digest).Scan(&addr)
		if err == nil {
			return nil, addr, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, "", fmt.Errorf("fill lease %s: %w", digest, err)
		}
		// Released or expired between the two statements: try again.
	}
	return nil, "", fmt.Errorf("fill lease %s: the lease kept changing hands", digest)
}

// hold renews the lease until the returned release is called.
func (c *Coordinator) hold(digest string) func() {
	ctx, cancel := context.WithCancel(c.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	c.renewals.Add(1)
	go func() {
		defer c.renewals.Done()
		defer wg.Done()
		t := time.NewTicker(c.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			tag, err := c.pool.Exec(ctx, `UPDATE fill_leases SET expires_at = now() + make_interval(secs => $3) WHERE digest = $1 AND holder = $2`,
				digest, c.holder, c.ttl.Seconds())
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				// The fill goes on: at worst another replica fetches the blob too.
				c.log.Warn("renewing fill lease failed", "digest", digest, "error", err.Error())
			case tag.RowsAffected() == 0:
				c.log.Warn("fill lease lost to another replica; filling on", "digest", digest)
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer dcancel()
			if _, err := c.pool.Exec(dctx, `DELETE FROM fill_leases WHERE digest = $1 AND holder = $2`, digest, c.holder); err != nil {
				// It expires by itself.
				c.log.Warn("releasing fill lease failed", "digest", digest, "error", err.Error())
			}
		})
	}
}
