package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"
)

// OCI distribution error codes hubcache sends. UNAVAILABLE and TOOMANYREQUESTS are the
// Docker registry's names for the conditions the OCI list leaves open.
const (
	CodeNameInvalid      = "NAME_INVALID"
	CodeNameUnknown      = "NAME_UNKNOWN"
	CodeManifestUnknown  = "MANIFEST_UNKNOWN"
	CodeManifestInvalid  = "MANIFEST_INVALID"
	CodeBlobUnknown      = "BLOB_UNKNOWN"
	CodeDigestInvalid    = "DIGEST_INVALID"
	CodeUnsupported      = "UNSUPPORTED"
	CodeDenied           = "DENIED"
	CodeTooManyRequests  = "TOOMANYREQUESTS"
	CodeUnavailable      = "UNAVAILABLE"
	CodeUnknown          = "UNKNOWN"
	CodeRangeUnsatisfied = "RANGE_INVALID"
)

// Errors a content source (the cache, the upstream client) returns; ErrorFor maps them to
// OCI codes. Wrapped with %w, checked with errors.Is.
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

// Error is the one OCI error response of hubcache: every failure a client sees is turned
// into an Error and written by WriteError, so status, code and body always agree. Message is
// short and generic; Cause, the detail, goes to the log only (it may name upstream hosts,
// addresses or storage paths).
type Error struct {
	Status  int
	Code    string
	Message string
	// RetryAfter becomes the Retry-After header when positive.
	RetryAfter time.Duration
	// Cause is logged with the request id, never sent.
	Cause error
}

// NewError returns an Error with a message fit for any client.
func NewError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Cause }

// ErrorFor maps any error to the response the client gets. An *Error in the chain is kept
// (with err as its cause when err wraps it); the sentinels above get their code and a fixed
// message; anything else is a 500 "internal error". Upstream "not found" is always a 404,
// never a 5xx.
func ErrorFor(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		if e.Cause == nil && err != error(e) {
			c := *e
			c.Cause = err
			return &c
		}
		return e
	}
	with := func(status int, code, message string) *Error {
		return &Error{Status: status, Code: code, Message: message, Cause: err}
	}
	var tooMany *TooManyRequestsError
	switch {
	case errors.As(err, &tooMany):
		e := with(http.StatusTooManyRequests, CodeTooManyRequests, "upstream rate limit reached")
		e.RetryAfter = tooMany.RetryAfter
		return e
	case errors.Is(err, ErrNameUnknown):
		return with(http.StatusNotFound, CodeNameUnknown, "repository name not known")
	case errors.Is(err, ErrManifestUnknown):
		return with(http.StatusNotFound, CodeManifestUnknown, "manifest unknown")
	case errors.Is(err, ErrBlobUnknown):
		return with(http.StatusNotFound, CodeBlobUnknown, "blob unknown")
	case errors.Is(err, ErrUnauthorized):
		// 403, not 401: a 401 makes clients start a token handshake with us that cannot
		// succeed; the refusal came from upstream and only upstream credentials can fix it.
		return with(http.StatusForbidden, CodeDenied, "the upstream registry refused access")
	case errors.Is(err, ErrTooLarge):
		return with(http.StatusBadGateway, CodeManifestInvalid, "manifest too large")
	case errors.Is(err, ErrUnavailable):
		return with(http.StatusServiceUnavailable, CodeUnavailable, "upstream registry unavailable")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return with(http.StatusServiceUnavailable, CodeUnavailable, "request timed out or was cancelled")
	default:
		return with(http.StatusInternalServerError, CodeUnknown, "internal error")
	}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Detail  *errorDetail `json:"detail,omitempty"`
}

// errorDetail carries only the request id: enough for an operator to find the log line.
type errorDetail struct {
	RequestID string `json:"requestID"`
}

// WriteError answers r with err as an OCI error (see ErrorFor) and logs it with the request
// id: server errors (5xx) at Warn with their cause, refusals at Debug. A HEAD response
// carries the status and headers only. It returns the Error written.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) *Error {
	e := ErrorFor(err)
	id := RequestID(r.Context())
	entry := errorEntry{Code: e.Code, Message: e.Message}
	if id != "" {
		entry.Detail = &errorDetail{RequestID: id}
	}
	body, merr := json.Marshal(errorBody{Errors: []errorEntry{entry}})
	if merr != nil {
		// Marshalling strings cannot fail; keep the status regardless.
		body = []byte(`{"errors":[]}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	if log != nil {
		level := slog.LevelDebug
		if e.Status >= 500 {
			level = slog.LevelWarn
		}
		attrs := []any{"request_id", id, "status", e.Status, "code", e.Code, "message", e.Message}
		if e.Cause != nil {
			attrs = append(attrs, "error", e.Cause.Error())
		}
		log.Log(r.Context(), level, "request failed", attrs...)
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return e
}
