package evict

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/metadata"
)

// The fill's half of the eviction protocol is metadata.CheckRecorded, below the pull path;
// these names keep the evictor's side readable.

// ErrEvictedDuringFill is metadata.ErrEvictedDuringFill.
var ErrEvictedDuringFill = metadata.ErrEvictedDuringFill

// Forgetter is metadata.Forgetter.
type Forgetter = metadata.Forgetter

// CheckRecorded is metadata.CheckRecorded.
func CheckRecorded(ctx context.Context, blobs blobstore.Store, meta Forgetter, d v1.Hash) error {
	return metadata.CheckRecorded(ctx, blobs, meta, d)
}
