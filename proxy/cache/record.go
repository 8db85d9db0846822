package cache

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/metadata"
)

// recordBlob links a committed (or found) blob to repo, then makes the eviction check that
// keeps "no row without its object" (metadata.CheckRecorded).
func (c *Cache) recordBlob(ctx context.Context, repo Repo, d v1.Hash, size int64) error {
	if err := c.meta.PutBlob(ctx, repo.String(), metadata.Blob{Digest: d, Size: size}); err != nil {
		return fmt.Errorf("linking blob %s: %w", d, metaErr(err))
	}
	return c.checkRecorded(ctx, d)
}

// recordManifest links a committed (or found) manifest to repo, records what it references
// (eviction protects the children of recent manifests) and makes the eviction check.
func (c *Cache) recordManifest(ctx context.Context, repo Repo, m Manifest) error {
	row := metadata.Manifest{Digest: m.Digest, MediaType: m.MediaType, Size: int64(len(m.Body))}
	if err := c.meta.PutManifest(ctx, repo.String(), row); err != nil {
		return fmt.Errorf("recording manifest %s: %w", m.Digest, metaErr(err))
	}
	if c.ev != nil {
		if err := c.ev.SetReferences(ctx, m.Digest, references(m.Body)); err != nil {
			return fmt.Errorf("recording references of %s: %w", m.Digest, metaErr(err))
		}
	}
	return c.checkRecorded(ctx, m.Digest)
}

func (c *Cache) checkRecorded(ctx context.Context, d v1.Hash) error {
	err := metadata.CheckRecorded(ctx, c.blobs, forgetter{c.meta, c.lookups}, d)
	if errors.Is(err, metadata.ErrEvictedDuringFill) {
		// The bytes in hand are verified and still served; the next pull refetches.
		c.log.Info("object evicted while it was recorded; forgotten", "digest", d.String())
		return nil
	}
	if err != nil {
		// A failed Forget is already marked a metadata failure; anything else is the blob
		// store's Stat failing. Either way it is a store failure, so that callers answer in a
		// degraded mode instead of failing the request (a store going down between the write
		// of a row and this check must not turn a servable pull into a 500).
		return blobErr(err)
	}
	return nil
}

// forgetter marks the metadata store's failures to forget as metadata failures, and forgets
// what the manifest path remembers of d.
type forgetter struct {
	meta    metadata.Forgetter
	lookups *lookups
}

func (f forgetter) Forget(ctx context.Context, d v1.Hash) error {
	f.lookups.forget(d)
	if err := f.meta.Forget(ctx, d); err != nil {
		return metaErr(err)
	}
	return nil
}
