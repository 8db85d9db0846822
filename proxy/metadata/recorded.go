package metadata

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
)

// The fill's half of the eviction protocol lives here, below the pull path, so that the
// cache (which records) and the evictor (which deletes) both depend on metadata and neither
// on the other.

// ErrEvictedDuringFill is returned by CheckRecorded when the object was deleted by an
// eviction between its commit (or the Stat that found it) and its metadata row.
var ErrEvictedDuringFill = errors.New("object evicted while it was being recorded")

// Forgetter removes every record of a digest (Store has this method).
type Forgetter interface {
	Forget(ctx context.Context, d v1.Hash) error
}

// CheckRecorded is the fill's half of the eviction protocol: call it right after
// PutBlob/PutManifest recorded d (after a commit, or after a Stat that found the object). If
// the object is gone, an evictor deleted it after forgetting an earlier row, and the row
// just written would point at nothing: it is forgotten, and ErrEvictedDuringFill returned.
// The caller may still serve the bytes it holds; the next pull refetches.
func CheckRecorded(ctx context.Context, blobs blobstore.Store, meta Forgetter, d v1.Hash) error {
	_, err := blobs.Stat(ctx, d)
	if err == nil {
		return nil
	}
	if !errors.Is(err, blobstore.ErrNotFound) {
		return fmt.Errorf("checking recorded object %s: %w", d, err)
	}
	if err := meta.Forget(ctx, d); err != nil {
		return fmt.Errorf("forgetting %s, evicted while it was recorded: %w", d, err)
	}
	return fmt.Errorf("%s: %w", d, ErrEvictedDuringFill)
}
