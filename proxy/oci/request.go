package oci

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
)

// RequestIDHeader carries a request's id in responses, and from the node to the proxy so
// one pull can be followed through both logs.
const RequestIDHeader = "X-Request-Id"

type requestIDKey struct{}

// WithRequestID returns ctx carrying id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the id WithRequestID stored, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// requestIDPattern bounds ids taken from a request: short and plain, so a client cannot
// write arbitrary text into the logs.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// NewRequestID returns a random 16-hex-digit id.
func NewRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// IncomingRequestID returns the id the request carries in RequestIDHeader when it is
// well-formed (a node forwarding a pull), else a new one.
func IncomingRequestID(r *http.Request) string {
	if id := r.Header.Get(RequestIDHeader); requestIDPattern.MatchString(id) {
		return id
	}
	return NewRequestID()
}

// Method labels.
const (
	MethodGet   = "GET"
	MethodHead  = "HEAD"
	MethodOther = "other"
)

// MethodLabel is the value of a "method" metric label: GET, HEAD or other. Clients choose
// the method; a label that took it verbatim would grow a series per made-up method.
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet:
		return MethodGet
	case http.MethodHead:
		return MethodHead
	default:
		return MethodOther
	}
}
