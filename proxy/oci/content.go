package oci

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Repo names a repository under the cache: its canonical registry ("docker.io", see
// imageref.CanonicalRegistry) and its repository path on that registry ("library/nginx").
type Repo struct {
	Registry string
	Path     string
}

// String is the full cache name, "docker.io/library/nginx": the repository key in metadata.
func (r Repo) String() string { return r.Registry + "/" + r.Path }

// Manifest is a manifest or index exactly as upstream served it.
type Manifest struct {
	Digest    v1.Hash
	MediaType string
	Body      []byte
}

// Blob is a blob that is cached or being filled. Its bytes may still be arriving: Open
// returns a reader that blocks until the requested bytes exist, and fails if the fill fails
// (so a client never receives a complete-looking body with wrong bytes).
type Blob interface {
	Digest() v1.Hash
	Size() int64
	// Open reads length bytes from offset (length < 0: to the end).
	Open(ctx context.Context, offset, length int64) (io.ReadCloser, error)
}
