package postgres

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/jackc/pgx/v5"

	"github.com/hubcache/hubcache/proxy/metadata"
)

var _ metadata.Evictor = (*Store)(nil)

// protectedCTE names every manifest accessed at or after $1 and everything reachable from it
// through manifest_refs. UNION (not UNION ALL) stops on cycles.
const protectedCTE = `WITH RECURSIVE protected(digest) AS (
	SELECT digest FROM manifests WHERE last_access >= $1
	UNION
	SELECT r.child FROM manifest_refs r JOIN protected p ON r.manifest = p.digest
)`

// Touch moves the last access of d forward to at.
func (s *Store) Touch(ctx context.Context, d v1.Hash, at time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, q := range []string{
			`UPDATE manifests SET last_access = GREATEST(last_access, $1) WHERE digest = $2`,
			`UPDATE blobs SET last_access = GREATEST(last_access, $1) WHERE digest = $2`,
		} {
			if _, err := tx.Exec(ctx, q, at.UTC(), d.String()); err != nil {
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
	var at *time.Time
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT max(last_access) FROM (
			SELECT last_access FROM manifests WHERE digest = $1
			UNION ALL SELECT last_access FROM blobs WHERE digest = $1) a`, d.String()).Scan(&at)
	})
	if err == nil && at == nil {
		err = pgx.ErrNoRows
	}
	if err != nil {
		return time.Time{}, notFound(fmt.Sprintf("last access of %s", d), err)
	}
	return at.UTC(), nil
}

// SetReferences replaces the list of what manifest references.
func (s *Store) SetReferences(ctx context.Context, manifest v1.Hash, children []v1.Hash) error {
	for _, c := range append([]v1.Hash{manifest}, children...) {
		if err := metadata.CheckDigest(c); err != nil {
			return fmt.Errorf("set references of %s: %w", manifest, err)
		}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// FOR KEY SHARE keeps a concurrent Forget from deleting the manifest meanwhile.
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM manifests WHERE digest = $1 FOR KEY SHARE`,
			manifest.String()).Scan(&one); err != nil {
			return notFound("manifest", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM manifest_refs WHERE manifest = $1`, manifest.String()); err != nil {
			return err
		}
		for _, c := range children {
			if _, err := tx.Exec(ctx, `INSERT INTO manifest_refs (manifest, child) VALUES ($1, $2)
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
	var out []metadata.Candidate
	err := s.retry(ctx, func() error {
		out = nil
		rows, err := s.pool.Query(ctx, protectedCTE+`
			SELECT digest, kind, size, last_access FROM (
				SELECT digest, 'manifest' AS kind, size, last_access FROM manifests
				UNION ALL SELECT digest, 'blob', size, last_access FROM blobs
			) o WHERE digest NOT IN (SELECT digest FROM protected)
			ORDER BY last_access, digest LIMIT $2`, protectSince.UTC(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var digest, kind string
			var c metadata.Candidate
			if err := rows.Scan(&digest, &kind, &c.Size, &c.LastAccess); err != nil {
				return err
			}
			if c.Digest, err = v1.NewHash(digest); err != nil {
				return fmt.Errorf("stored digest %q: %w", digest, err)
			}
			c.Kind, c.LastAccess = metadata.Kind(kind), c.LastAccess.UTC()
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("eviction candidates: %w", err)
	}
	return out, nil
}

// ForgetIfUnused removes d's records unless it was used or is protected. The object rows are
// locked first, so a Touch or Put of d waits and cannot slip between the check and the delete.
func (s *Store) ForgetIfUnused(ctx context.Context, d v1.Hash, accessedBefore, protectSince time.Time) (bool, error) {
	removed := false
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		removed = false
		var known, used bool
		err := tx.QueryRow(ctx, `SELECT COUNT(*) > 0, COALESCE(bool_or(last_access >= $2), false) FROM (
			SELECT last_access FROM manifests WHERE digest = $1 FOR UPDATE) m`,
			d.String(), accessedBefore.UTC()).Scan(&known, &used)
		if err != nil {
			return err
		}
		var knownBlob, usedBlob bool
		err = tx.QueryRow(ctx, `SELECT COUNT(*) > 0, COALESCE(bool_or(last_access >= $2), false) FROM (
			SELECT last_access FROM blobs WHERE digest = $1 FOR UPDATE) b`,
			d.String(), accessedBefore.UTC()).Scan(&knownBlob, &usedBlob)
		if err != nil {
			return err
		}
		if !(known || knownBlob) || used || usedBlob {
			return nil
		}
		var protected bool
		if err := tx.QueryRow(ctx, protectedCTE+` SELECT EXISTS (SELECT 1 FROM protected WHERE digest = $2)`,
			protectSince.UTC(), d.String()).Scan(&protected); err != nil {
			return err
		}
		if protected {
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
	err := s.retry(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT
			(SELECT COALESCE(SUM(size), 0) FROM manifests)::bigint + (SELECT COALESCE(SUM(size), 0) FROM blobs)::bigint`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("total size: %w", err)
	}
	return n, nil
}
