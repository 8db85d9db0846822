package upstream

import (
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Errors returned by Client, wrapped with context; check them with errors.Is.
var (
	// ErrUnknownRegistry: the registry is not configured. Nothing was contacted.
	ErrUnknownRegistry = errors.New("registry not configured")
	// ErrNotFound: upstream does not have the manifest, blob or repository (404,
	// MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN), or the name cannot exist there.
	ErrNotFound = errors.New("not found upstream")
	// ErrUnauthorized: upstream refused access (401/403) after the token flow.
	ErrUnauthorized = errors.New("upstream denied access")
	// ErrTokenRefused: the registry's token endpoint would not issue a token at all (wrong
	// credentials, or the registry refusing everyone). It wraps ErrUnauthorized; unlike a 401
	// on one repository it says nothing about that repository.
	ErrTokenRefused = fmt.Errorf("token endpoint refused: %w", ErrUnauthorized)
	// ErrUnavailable: upstream could not be reached, timed out, or failed (5xx and other
	// unexpected answers).
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrDigestMismatch: the manifest body does not hash to the digest asked for or the
	// digest upstream announced.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrTooLarge: the manifest is over the size cap.
	ErrTooLarge = errors.New("manifest too large")
)

// RateLimitError is upstream's 429, checked with errors.As. It is kept apart from
// ErrUnavailable so that callers can answer 429 with Retry-After.
type RateLimitError struct {
	// RetryAfter is upstream's Retry-After, zero when it sent none.
	RetryAfter time.Duration
	// Message is upstream's error message, e.g. Docker Hub's pull-limit text.
	Message string
}

func (e *RateLimitError) Error() string {
	msg := "upstream rate limit reached"
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return msg
}

// Descriptor describes a manifest as upstream announced it.
type Descriptor struct {
	Digest    v1.Hash
	MediaType string
	Size      int64
}
