package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestErrorForGivesEachConditionItsCodeAndAGenericMessage(t *testing.T) {
	dial := errors.New(`Get "https://10.1.2.3:443/v2/": dial tcp 10.1.2.3:443: connect: connection refused`)
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"an unknown manifest is 404", fmt.Errorf("x: %w", ErrManifestUnknown), 404, CodeManifestUnknown},
		{"an unknown blob is 404", ErrBlobUnknown, 404, CodeBlobUnknown},
		{"an unknown name is 404", ErrNameUnknown, 404, CodeNameUnknown},
		{"a rate limit is 429", &TooManyRequestsError{RetryAfter: time.Minute}, 429, CodeTooManyRequests},
		{"upstream down is 503 without its address", fmt.Errorf("%w: %w", ErrUnavailable, dial), 503, CodeUnavailable},
		{"an upstream refusal is 403", ErrUnauthorized, 403, CodeDenied},
		{"an oversized manifest is 502", ErrTooLarge, 502, CodeManifestInvalid},
		{"anything else is a 500 that says nothing", dial, 500, CodeUnknown},
		{"an Error wrapped in context keeps its status", fmt.Errorf("parsing: %w", NewError(400, CodeNameInvalid, "invalid repository name")), 400, CodeNameInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := ErrorFor(tc.err)
			if e.Status != tc.status || e.Code != tc.code {
				t.Fatalf("ErrorFor = %d %s, want %d %s", e.Status, e.Code, tc.status, tc.code)
			}
			if strings.Contains(e.Message, "10.1.2.3") || strings.Contains(e.Message, "dial") {
				t.Fatalf("message %q leaks the cause", e.Message)
			}
			if !errors.Is(e, tc.err) && e.Cause != tc.err {
				t.Fatalf("the cause %v is not kept for the log", tc.err)
			}
		})
	}
}

func TestWriteErrorSendsTheRequestIDAndLogsTheDetail(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := httptest.NewRequest(http.MethodGet, "/v2/docker.io/library/nginx/manifests/latest", nil)
	r = r.WithContext(WithRequestID(r.Context(), "abc123"))
	w := httptest.NewRecorder()
	WriteError(w, r, log, fmt.Errorf("%w: dial tcp 10.1.2.3:443: connection refused", ErrUnavailable))

	if w.Code != 503 {
		t.Fatalf("status %d, want 503", w.Code)
	}
	var body struct {
		Errors []struct {
			Code    string
			Message string
			Detail  struct{ RequestID string }
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("not an OCI error body: %q", w.Body.String())
	}
	got := body.Errors[0]
	if got.Code != CodeUnavailable || got.Detail.RequestID != "abc123" {
		t.Fatalf("body %q: want UNAVAILABLE with request id abc123", w.Body.String())
	}
	if strings.Contains(w.Body.String(), "10.1.2.3") {
		t.Fatalf("body %q leaks the upstream address", w.Body.String())
	}
	if !strings.Contains(logs.String(), "10.1.2.3") || !strings.Contains(logs.String(), `"request_id":"abc123"`) {
		t.Fatalf("log %q lacks the detail or the request id", logs.String())
	}
}

func TestWriteErrorAnswersHEADWithoutABody(t *testing.T) {
	r := httptest.NewRequest(http.MethodHead, "/v2/x/blobs/y", nil)
	w := httptest.NewRecorder()
	WriteError(w, r, nil, &TooManyRequestsError{RetryAfter: 1500 * time.Millisecond})
	if w.Code != 429 || w.Body.Len() != 0 || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("got %d, body %q, Retry-After %q; want 429, no body, 2", w.Code, w.Body.String(), w.Header().Get("Retry-After"))
	}
}

func TestMethodLabelIsAClosedSet(t *testing.T) {
	for method, want := range map[string]string{"GET": "GET", "HEAD": "HEAD", "POST": "other", "get": "other", "X-MADE-UP-42": "other"} {
		if got := MethodLabel(method); got != want {
			t.Errorf("MethodLabel(%q) = %q, want %q", method, got, want)
		}
	}
}

func TestIncomingRequestIDKeepsOnlyPlainIDs(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	r.Header.Set(RequestIDHeader, "node-1a2b")
	if got := IncomingRequestID(r); got != "node-1a2b" {
		t.Fatalf("a plain id is replaced: %q", got)
	}
	r.Header.Set(RequestIDHeader, "x\ninjected log line")
	if got := IncomingRequestID(r); got == "x\ninjected log line" || len(got) != 16 {
		t.Fatalf("a hostile id is kept: %q", got)
	}
}
