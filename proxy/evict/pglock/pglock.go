// Package pglock lets one hubcache replica at a time run an eviction pass, with a Postgres
// session advisory lock (pg_try_advisory_lock). It implements evict.Locker.
package pglock

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lockQuery takes the lock keyed by a fixed name and the current schema, so that several
// hubcache installations sharing one database (one schema each) do not block each other.
const lockQuery = `SELECT pg_try_advisory_lock(hashtextextended('hubcache-evict:' || current_schema(), 0))`

// Locker takes the eviction lock on a connection of its own, held for the whole pass.
type Locker struct {
	cfg *pgx.ConnConfig
}

// New parses dsn (the same DSN as the metadata store's; its pool_* settings are ignored).
// Errors never echo the DSN, which may hold a password.
func New(dsn string) (*Locker, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("eviction lock: invalid Postgres DSN")
	}
	return &Locker{cfg: pc.ConnConfig}, nil
}

// TryEvictionLock takes the lock if no other session holds it. The lock belongs to a
// dedicated session: release closes it, and if the process dies the server ends the session
// and frees the lock, so a dead replica never blocks eviction.
func (l *Locker) TryEvictionLock(ctx context.Context) (release func(), ok bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return nil, false, fmt.Errorf("eviction lock: connect: %w", err)
	}
	if err := conn.QueryRow(ctx, lockQuery).Scan(&ok); err != nil {
		closeConn(conn)
		return nil, false, fmt.Errorf("eviction lock: %w", err)
	}
	if !ok {
		closeConn(conn)
		return nil, false, nil
	}
	return func() { closeConn(conn) }, true, nil
}

// closeConn ends the session, which releases its advisory locks. It gets its own deadline:
// the caller's context may already be done.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
