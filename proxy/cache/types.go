package cache

import "github.com/hubcache/hubcache/proxy/oci"

// The errors the cache returns are the protocol's (proxy/oci), so that the HTTP layer maps
// them without importing the cache. Wrapped with %w, checked with errors.Is.
var (
	ErrNameUnknown     = oci.ErrNameUnknown
	ErrManifestUnknown = oci.ErrManifestUnknown
	ErrBlobUnknown     = oci.ErrBlobUnknown
	ErrUnavailable     = oci.ErrUnavailable
	ErrUnauthorized    = oci.ErrUnauthorized
	ErrTooLarge        = oci.ErrTooLarge
)

// TooManyRequestsError is returned when upstream rate-limited a miss.
type TooManyRequestsError = oci.TooManyRequestsError

// Manifest is a manifest or index exactly as upstream served it.
type Manifest = oci.Manifest

// Blob is a blob that is cached or being filled (see oci.Blob).
type Blob = oci.Blob

// Repo names a repository under the cache (see oci.Repo).
type Repo = oci.Repo
