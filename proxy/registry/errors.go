package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/hubcache/hubcache/proxy/cache"
)

// OCI distribution error codes this proxy sends. UNAVAILABLE and TOOMANYREQUESTS are the
// Docker registry's names for the conditions the OCI list leaves open.
const (
	codeNameInvalid      = "NAME_INVALID"
	codeNameUnknown      = "NAME_UNKNOWN"
	codeManifestUnknown  = "MANIFEST_UNKNOWN"
	codeManifestInvalid  = "MANIFEST_INVALID"
	codeBlobUnknown      = "BLOB_UNKNOWN"
	codeDigestInvalid    = "DIGEST_INVALID"
	codeUnsupported      = "UNSUPPORTED"
	codeDenied           = "DENIED"
	codeTooManyRequests  = "TOOMANYREQUESTS"
	codeUnavailable      = "UNAVAILABLE"
	codeUnknown          = "UNKNOWN"
	codeRangeUnsatisfied = "RANGE_INVALID"
)

// Error is the one OCI error response of the proxy: every failure the client sees is turned
// into an Error and written by write, so status, code and body always agree.
type Error struct {
	Status  int
	Code    string
	Message string
	Detail  any
	// RetryAfter becomes the Retry-After header when positive.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func newError(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// write sends the error. A HEAD response carries the status and headers only.
func (e *Error) write(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	if err != nil {
		// Detail is always a plain value here; fall back to a body without it.
		body, _ = json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message}}})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// errorFor maps an error from parsing or from the Backend to the response the client gets.
// Upstream "not found" is always a 404, never a 5xx.
func errorFor(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var tooMany *cache.TooManyRequestsError
	switch {
	case errors.As(err, &tooMany):
		return &Error{Status: http.StatusTooManyRequests, Code: codeTooManyRequests,
			Message: tooMany.Error(), RetryAfter: tooMany.RetryAfter}
	case errors.Is(err, cache.ErrNameUnknown):
		return newError(http.StatusNotFound, codeNameUnknown, err.Error())
	case errors.Is(err, cache.ErrManifestUnknown):
		return newError(http.StatusNotFound, codeManifestUnknown, err.Error())
	case errors.Is(err, cache.ErrBlobUnknown):
		return newError(http.StatusNotFound, codeBlobUnknown, err.Error())
	case errors.Is(err, cache.ErrUnauthorized):
		// 403, not 401: a 401 makes clients start a token handshake with us that cannot
		// succeed; the refusal came from upstream and only upstream credentials can fix it.
		return newError(http.StatusForbidden, codeDenied, err.Error())
	case errors.Is(err, cache.ErrTooLarge):
		return newError(http.StatusBadGateway, codeManifestInvalid, err.Error())
	case errors.Is(err, cache.ErrUnavailable):
		return newError(http.StatusServiceUnavailable, codeUnavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return newError(http.StatusServiceUnavailable, codeUnavailable, "request timed out or was cancelled")
	default:
		return newError(http.StatusInternalServerError, codeUnknown, "internal error")
	}
}
