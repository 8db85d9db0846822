package cache

import (
	"context"
	"errors"
)

// storeError marks a failure of one of the stores (not "not found"): the cache then answers
// in a degraded mode instead of failing the request (see docs/operations.md).
type storeError struct {
	store string // "metadata" or "blob_store"
	err   error
}

func (e *storeError) Error() string { return e.store + ": " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func metaErr(err error) error {
	var se *storeError
	if errors.As(err, &se) {
		return err
	}
	return &storeError{store: "metadata", err: err}
}

func blobErr(err error) error {
	var se *storeError
	if errors.As(err, &se) {
		return err
	}
	return &storeError{store: "blob_store", err: err}
}

// degradedBy returns the store whose failure err reports, or "" (then err is an ordinary
// error). A request whose own context ended is not degraded: it is over.
func degradedBy(ctx context.Context, err error) string {
	var se *storeError
	if ctx.Err() != nil || !errors.As(err, &se) {
		return ""
	}
	return se.store
}
