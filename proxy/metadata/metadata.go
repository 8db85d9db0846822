// Package metadata defines what the cache knows about repositories, tags, manifests and blobs.
// Implementations live in sub-packages (sqlite, postgres) and all pass the conformance suite
// in metadatatest. Repositories are full cache names such as "docker.io/library/nginx".
package metadata

import (
	"context"
	"errors"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrNotFound is returned when a tag, manifest or blob link is not recorded.
var ErrNotFound = errors.New("metadata not found")

// Tag is the last known resolution of a tag.
type Tag struct {
	Digest v1.Hash
	// CheckedAt is when upstream last confirmed (or gave) this digest for the tag.
	CheckedAt time.Time
}

// Manifest describes a manifest or index whose bytes are committed in the blob store.
type Manifest struct {
	Digest    v1.Hash
	MediaType string
	Size      int64
}

// Blob describes a committed blob.
type Blob struct {
	Digest v1.Hash
	Size   int64
}

// Store records metadata. A row is written only after its object is committed in the blob
// store. Every method is safe for concurrent use, also across processes sharing one database.
type Store interface {
	// GetTag returns the tag's last resolution in repo, or ErrNotFound.
	GetTag(ctx context.Context, repo, tag string) (Tag, error)
	// PutTag records (or replaces) the tag's resolution.
	PutTag(ctx context.Context, repo, tag string, t Tag) error

	// GetManifest returns the manifest if it is linked to repo, or ErrNotFound.
	GetManifest(ctx context.Context, repo string, d v1.Hash) (Manifest, error)
	// PutManifest records the manifest and links it to repo; idempotent.
	PutManifest(ctx context.Context, repo string, m Manifest) error

	// GetBlob returns the blob if it is linked to repo, or ErrNotFound. Linking scopes access:
	// a blob fetched for one repository is not served under another.
	GetBlob(ctx context.Context, repo string, d v1.Hash) (Blob, error)
	// PutBlob records the blob and links it to repo; idempotent.
	PutBlob(ctx context.Context, repo string, b Blob) error

	// Forget removes every record of the digest (manifest or blob, all links, and tags that
	// point at it): used when the object turns out to be missing from the blob store.
	Forget(ctx context.Context, d v1.Hash) error

	// GetVisibility returns the last recorded visibility of repo, or ErrNotFound.
	GetVisibility(ctx context.Context, repo string) (RepositoryVisibility, error)
	// PutVisibility records (or replaces) the visibility of repo. Replicas sharing the
	// store share the answer.
	PutVisibility(ctx context.Context, repo string, v RepositoryVisibility) error

	// Ping checks that the store is reachable.
	Ping(ctx context.Context) error
	Close() error
}
