package cache

import (
	"context"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Presigner is the optional blob store capability behind redirects (proxy/blobstore/s3 has
// it): a URL that reads the object directly for a while.
type Presigner interface {
	PresignGet(ctx context.Context, d v1.Hash, ttl time.Duration) (string, error)
}

// BlobURL returns a URL the client may read the blob from directly, valid for ttl, when the
// blob store can presign and the blob is cached for repo (linked, or confirmed upstream).
// ok is false otherwise: the caller serves the blob as usual (fill, degraded modes).
func (c *Cache) BlobURL(ctx context.Context, repo Repo, d v1.Hash, ttl time.Duration) (url string, ok bool) {
	p, can := c.blobs.(Presigner)
	if !can || c.checkRegistry(repo) != nil {
		return "", false
	}
	if _, err := c.cachedBlob(ctx, repo, d); err != nil {
		return "", false
	}
	u, err := p.PresignGet(ctx, d, ttl)
	if err != nil {
		c.log.Warn("presigning a blob failed; serving it through the proxy", "digest", d.String(), "error", err.Error())
		return "", false
	}
	c.m.hit(kindBlob)
	c.touch(ctx, d)
	return u, true
}
