package metadata

import (
	"context"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Kind says whether a recorded object is a manifest or a blob.
type Kind string

// The kinds of recorded objects.
const (
	KindManifest Kind = "manifest"
	KindBlob     Kind = "blob"
)

// Candidate is an object eviction may remove.
type Candidate struct {
	Digest     v1.Hash
	Kind       Kind
	Size       int64
	LastAccess time.Time
}

// Evictor is an optional capability of a Store, found by type assertion, that a size-budget
// eviction loop needs. Puts set an object's last access to the time of the put.
type Evictor interface {
	// Touch records that d (a manifest or a blob) was served at at. It only moves the last
	// access forward; an unknown digest is not an error.
	Touch(ctx context.Context, d v1.Hash, at time.Time) error
	// LastAccess returns when d was last put or served, or ErrNotFound.
	LastAccess(ctx context.Context, d v1.Hash) (time.Time, error)
	// SetReferences records what manifest references: an index's manifests, or a manifest's
	// config and layers. It replaces any earlier list. The manifest must be recorded.
	SetReferences(ctx context.Context, manifest v1.Hash, children []v1.Hash) error
	// EvictionCandidates lists up to limit objects, least recently used first, leaving out
	// every manifest accessed at or after protectSince and everything it references, directly
	// or through an index.
	EvictionCandidates(ctx context.Context, protectSince time.Time, limit int) ([]Candidate, error)
	// ForgetIfUnused removes every record of d, like Store.Forget, but only if d was not
	// accessed at or after accessedBefore and is not protected (as in EvictionCandidates). It
	// reports whether it removed anything; the check and the removal are atomic.
	ForgetIfUnused(ctx context.Context, d v1.Hash, accessedBefore, protectSince time.Time) (bool, error)
	// TotalSize returns the sum of the sizes of all recorded manifests and blobs.
	TotalSize(ctx context.Context) (int64, error)
}
