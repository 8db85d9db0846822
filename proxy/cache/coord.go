package cache

import (
	"context"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
)

// ErrNoFill is returned by OpenFill when this process neither fills nor stores the digest.
var ErrNoFill = errors.New("no fill of this blob here")

// OpenFill reads d from offset to the end for another replica (proxy/fillcoord): from the
// fill in progress here, as its bytes arrive, else from the store. Like every fill reader, it
// fails rather than end early when the fill fails, and has the last byte once the digest is
// verified; unlike a client's, it ends only when the fill has ended (the blob is committed), so
// the follower, whose own clients have every byte by then, finds the object in the store.
func (c *Cache) OpenFill(ctx context.Context, d v1.Hash, offset int64) (int64, io.ReadCloser, error) {
	if f := c.fillFor(d); f != nil {
		if _, err := f.wait(ctx); err != nil {
			return 0, nil, err
		}
		if f.Size() >= 0 && offset > f.Size() {
			return 0, nil, fmt.Errorf("offset %d past the %d bytes of %s", offset, f.Size(), d)
		}
		rc, err := f.open(ctx, offset, -1, true)
		return f.Size(), rc, err
	}
	size, err := c.blobs.Stat(ctx, d)
	if errors.Is(err, blobstore.ErrNotFound) {
		return 0, nil, fmt.Errorf("%w: %s", ErrNoFill, d)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("checking blob %s: %w", d, err)
	}
	if offset > size {
		return 0, nil, fmt.Errorf("offset %d past the %d bytes of %s", offset, size, d)
	}
	rc, err := c.blobs.Open(ctx, d, offset, -1)
	if err != nil {
		return 0, nil, fmt.Errorf("opening blob %s: %w", d, err)
	}
	return size, rc, nil
}

// StoredElsewhere is implemented by upstream bodies whose bytes someone else commits to the
// blob store (proxy/fillcoord: the replica holding the fill, or the body itself after taking
// the fill over). The fill then writes nothing itself: each cold blob is uploaded once.
type StoredElsewhere interface {
	StoredElsewhere() bool
}

// writerFor is the fill's store writer: none (a pass-through writer) when body is stored
// elsewhere.
func (c *Cache) writerFor(ctx context.Context, d v1.Hash, body io.Reader) *fillWriter {
	if se, ok := body.(StoredElsewhere); ok && se.StoredElsewhere() {
		return &fillWriter{c: c, d: d}
	}
	return c.createForFill(ctx, d)
}

// committedElsewhere reports whether a body stored elsewhere, now fully read and verified,
// left the whole object in the store. It may not have: a holder whose store failed passes
// its bytes through without committing them.
func (c *Cache) committedElsewhere(ctx context.Context, body io.Reader, d v1.Hash, size int64) bool {
	se, ok := body.(StoredElsewhere)
	if !ok || !se.StoredElsewhere() {
		return false
	}
	got, err := c.blobs.Stat(ctx, d)
	return err == nil && got == size
}
