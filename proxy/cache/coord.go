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
// fails rather than end early when the fill fails, and it holds back the last byte until the
// blob is verified and committed.
func (c *Cache) OpenFill(ctx context.Context, d v1.Hash, offset int64) (int64, io.ReadCloser, error) {
	if f := c.fillFor(d); f != nil {
		b, err := f.wait(ctx)
		if err != nil {
			return 0, nil, err
		}
		if b.Size() >= 0 && offset > b.Size() {
			return 0, nil, fmt.Errorf("offset %d past the %d bytes of %s", offset, b.Size(), d)
		}
		rc, err := b.Open(ctx, offset, -1)
		return b.Size(), rc, err
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
