package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/metadata"
)

var _ metadata.Evictor = (*Store)(nil)

// protectedCTE names every manifest accessed at or after ?1 and everything reachable from it
// through manifest_refs. UNION (not UNION ALL) stops on cycles.
const protectedCTE = `WITH RECURSIVE protected(digest) AS (
	SELECT digest FROM manifests WHERE last_access >= ?1
	UNION
	SELECT r.child FROM manifest_refs r JOIN protected p ON r.manifest = p.digest
)`

// Touch moves the last access of d forward to at.
func (s *Store) Touch(ctx context.Context, d v1.Hash, at time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, st := range []*sql.Stmt{s.st.touchManifest, s.st.touchBlob} {
			if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, at.UnixMicro(), d.String()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("touch %s: %w", d, err)
	}
	return nil
}

// LastAccess returns when d was last put or served.
func (s *Store) LastAccess(ctx context.Context, d v1.Hash) (time.Time, error) {
	var at sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT max(last_access) FROM (
		SELECT last_access FROM manifests WHERE digest = ?1
		UNION ALL SELECT last_access FROM blobs WHERE digest = ?1)`, d.String()).Scan(&at)
	if err == nil && !at.Valid {
		err = sql.ErrNoRows
	}
	if err != nil {
		return time.Time{}, notFound(fmt.Sprintf("last access of %s", d), err)
	}
	return time.UnixMicro(at.Int64).UTC(), nil
}

// SetReferences replaces the list of what manifest references.
func (s *Store) SetReferences(ctx context.Context, manifest v1.Hash, children []v1.Hash) error {
	for _, c := range append([]v1.Hash{manifest}, children...) {
		if err := metadata.CheckDigest(c); err != nil {
			return fmt.Errorf("set references of %s: %w", manifest, err)
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM manifests WHERE digest = ?`, manifest.String()).Scan(&one); err != nil {
			return notFound("manifest", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM manifest_refs WHERE manifest = ?`, manifest.String()); err != nil {
			return err
		}
		for _, c := range children {
			if _, err := tx.ExecContext(ctx, `INSERT INTO manifest_refs (manifest, child) VALUES (?, ?)
				ON CONFLICT DO NOTHING`, manifest.String(), c.String()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set references of %s: %w", manifest, err)
	}
	return nil
}

// EvictionCandidates lists unprotected objects, least recently used first.
func (s *Store) EvictionCandidates(ctx context.Context, protectSince time.Time, limit int) ([]metadata.Candidate, error) {
	rows, err := s.db.QueryContext(ctx, protectedCTE+`
		SELECT digest, kind, size, last_access FROM (
			SELECT digest, 'manifest' AS kind, size, last_access FROM manifests
			UNION ALL SELECT digest, 'blob', size, last_access FROM blobs
		) WHERE digest NOT IN (SELECT digest FROM protected)
		ORDER BY last_access, digest LIMIT ?2`, protectSince.UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("eviction candidates: %w", err)
	}
	defer rows.Close()
	var out []metadata.Candidate
	for rows.Next() {
		var digest, kind string
		var c metadata.Candidate
		var at int64
		if err := rows.Scan(&digest, &kind, &c.Size, &at); err != nil {
			return nil, fmt.Errorf("eviction candidates: %w", err)
		}
		if c.Digest, err = parseDigest(digest); err != nil {
			return nil, fmt.Errorf("eviction candidates: %w", err)
		}
		c.Kind, c.LastAccess = metadata.Kind(kind), time.UnixMicro(at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eviction candidates: %w", err)
	}
	return out, nil
}

// ForgetIfUnused removes d's records unless it was used or became protected. The write
// transaction is IMMEDIATE, so the checks and the removal see one state.
func (s *Store) ForgetIfUnused(ctx context.Context, d v1.Hash, accessedBefore, protectSince time.Time) (bool, error) {
	removed := false
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var known, used, protected bool
		err := tx.QueryRowContext(ctx, protectedCTE+`
			SELECT
				EXISTS (SELECT 1 FROM manifests WHERE digest = ?2 UNION ALL SELECT 1 FROM blobs WHERE digest = ?2),
				EXISTS (SELECT 1 FROM manifests WHERE digest = ?2 AND last_access >= ?3
					UNION ALL SELECT 1 FROM blobs WHERE digest = ?2 AND last_access >= ?3),
				EXISTS (SELECT 1 FROM protected WHERE digest = ?2)`,
			protectSince.UnixMicro(), d.String(), accessedBefore.UnixMicro()).Scan(&known, &used, &protected)
		if err != nil {
			return err
		}
		if !known || used || protected {
			return nil
		}
		removed = true
		return forget(ctx, tx, d)
	})
	if err != nil {
		return false, fmt.Errorf("forget %s if unused: %w", d, err)
	}
	return removed, nil
}

// TotalSize sums the sizes of all recorded objects.
func (s *Store) TotalSize(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(SUM(size), 0) FROM manifests) + (SELECT COALESCE(SUM(size), 0) FROM blobs)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("total size: %w", err)
	}
	return n, nil
}
