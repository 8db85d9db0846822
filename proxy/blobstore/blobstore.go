// Package blobstore defines where the cache keeps content-addressed bytes (blobs and the raw
// bytes of manifests). Implementations live in sub-packages (file, s3) and all pass the
// conformance suite in blobstoretest.
package blobstore

import (
	"context"
	"errors"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrNotFound is returned when no committed object exists for a digest.
var ErrNotFound = errors.New("blob not found")

// ErrInvalidDigest is returned for a digest that is not a well-formed sha256 digest, the
// only algorithm a store keeps blobs under.
var ErrInvalidDigest = errors.New("invalid digest: want sha256 with 64 lowercase hex characters")

// Store keeps objects keyed by their digest. An object becomes visible only when its Writer
// commits: readers never see a partial object. The store does not verify content; the cache
// verifies digest and size before it commits.
type Store interface {
	// Stat returns the size of the committed object, or ErrNotFound.
	Stat(ctx context.Context, d v1.Hash) (int64, error)
	// Open reads length bytes starting at offset (length < 0: to the end), or ErrNotFound.
	Open(ctx context.Context, d v1.Hash, offset, length int64) (io.ReadCloser, error)
	// Create starts writing the object for d. Nothing is visible until Commit.
	Create(ctx context.Context, d v1.Hash) (Writer, error)
	// Delete removes the object; deleting a missing object is not an error.
	Delete(ctx context.Context, d v1.Hash) error
}

// Writer streams one object into the store.
type Writer interface {
	io.Writer
	// Commit makes the written bytes visible under the digest, atomically.
	Commit(ctx context.Context) error
	// Cancel discards everything written; safe to call after Commit (then it does nothing).
	Cancel(ctx context.Context) error
}

// Versioned is implemented by the readers Open returns when the store can name the version
// of the object being read: id changes whenever the object's bytes can have changed through
// the file system or the store's API (for a file, its device, inode, size, modification and
// change times; for an S3 object, its version ID, ETag and Last-Modified), and changed is when
// the object last changed as far as the store can tell. id "" means unknown. The cache hashes
// an unchanged version once per verify interval instead of on every read.
type Versioned interface {
	Version() (id string, changed time.Time)
}

// ErrChanged is returned by a reader that finds, before its last bytes, that the object
// changed while it was being read: what was read may mix two versions.
var ErrChanged = errors.New("object changed while it was read")

// ReadBacker is implemented by Writers whose bytes can be read while they are being written
// (the file store: its temporary file). The cache then lets a fill's clients read the store's
// own file instead of writing every chunk a second time to a spool file.
type ReadBacker interface {
	// ReadBack opens the bytes written so far; bytes written later are readable through the
	// same handle once their Write returned. The handle stays readable after Commit or Cancel
	// until it is closed. ReadBack is safe to call concurrently with Write, Commit and Cancel;
	// it fails once the write was cancelled.
	ReadBack() (ReadAtCloser, error)
}

// ReadAtCloser is what ReadBack returns.
type ReadAtCloser interface {
	io.ReaderAt
	io.Closer
}
