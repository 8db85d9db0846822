package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Errors the HTTP layer maps to OCI error codes. Wrapped with %w, checked with errors.Is.
var (
	// ErrNameUnknown: the registry in the path is not a configured upstream, or upstream
	// does not know the repository.
	ErrNameUnknown = errors.New("repository name not known")
	// ErrManifestUnknown: neither the cache nor upstream has the manifest.
	ErrManifestUnknown = errors.New("manifest unknown")
	// ErrBlobUnknown: neither the cache nor upstream has the blob (or it is not linked to the
	// repository and upstream does not confirm it).
	ErrBlobUnknown = errors.New("blob unknown")
	// ErrUnavailable: the content is not cached and upstream cannot be reached or failed.
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrUnauthorized: upstream refused our credentials and nothing is cached.
	ErrUnauthorized = errors.New("upstream denied access")
	// ErrTooLarge: upstream sent a manifest over the size cap.
	ErrTooLarge = errors.New("manifest too large")
)

// TooManyRequestsError is returned when upstream rate-limited a miss.
type TooManyRequestsError struct {
	// RetryAfter is upstream's Retry-After, zero when it gave none.
	RetryAfter time.Duration
}

func (e *TooManyRequestsError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("upstream rate limit reached, retry after %s", e.RetryAfter)
	}
	return "upstream rate limit reached"
}

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

// Repo names a repository under the cache: its canonical registry ("docker.io", see
// imageref.CanonicalRegistry) and its repository path on that registry ("library/nginx").
type Repo struct {
	Registry string
	Path     string
}

// String is the full cache name, "docker.io/library/nginx": the repository key in metadata.
func (r Repo) String() string { return r.Registry + "/" + r.Path }
