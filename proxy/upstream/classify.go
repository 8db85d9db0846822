package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// statusError turns a non-2xx response into one of the package's errors.
func statusError(resp *http.Response) error {
	// Error bodies are small; a bounded read keeps a hostile upstream from feeding us forever.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	code, message := errorBody(body)
	detail := fmt.Sprintf("status %d", resp.StatusCode)
	if code != "" || message != "" {
		detail += fmt.Sprintf(" %s: %s", code, message)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return &RateLimitError{RetryAfter: retryAfter(resp.Header.Get("Retry-After")), Message: message}
	case resp.StatusCode == http.StatusNotFound,
		code == "MANIFEST_UNKNOWN", code == "BLOB_UNKNOWN", code == "NAME_UNKNOWN":
		return fmt.Errorf("%w: %s", ErrNotFound, detail)
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s", ErrUnauthorized, detail)
	case resp.StatusCode == http.StatusBadRequest:
		// NAME_INVALID, MANIFEST_INVALID, …: upstream says this cannot exist.
		return fmt.Errorf("%w: %s", ErrNotFound, detail)
	default:
		return fmt.Errorf("%w: %s", ErrUnavailable, detail)
	}
}

// errorBody reads the first error of an OCI error body.
func errorBody(body []byte) (code, message string) {
	var e struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return "", ""
	}
	return e.Errors[0].Code, e.Errors[0].Message
}

// retryAfter reads Retry-After as seconds or as an HTTP date; zero when absent or invalid.
func retryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d.Round(time.Second)
		}
	}
	return 0
}

// classify maps an error from a round trip or from the transport's ping and token exchange
// (where go-containerregistry reports HTTP answers as *transport.Error).
func classify(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusTooManyRequests:
			return &RateLimitError{Message: terr.Error()}
		case terr.StatusCode == http.StatusUnauthorized, terr.StatusCode == http.StatusForbidden:
			if terr.Request != nil && !strings.HasPrefix(terr.Request.URL.Path, "/v2/") {
				// The refusal came from the token endpoint, not from the repository.
				return fmt.Errorf("%w: %w", ErrTokenRefused, err)
			}
			return fmt.Errorf("%w: %w", ErrUnauthorized, err)
		case terr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
