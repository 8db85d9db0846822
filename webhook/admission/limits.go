package admission

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"
)

// Limits bound what one admission request may cost. The API server gives up on a webhook after
// its timeoutSeconds (3 s in manifests/) and then admits the Pod unchanged (failurePolicy
// Ignore); past that point any work is wasted, so every limit keeps the answer inside it.
type Limits struct {
	// MaxRequestBytes caps the AdmissionReview body. A Pod is at most about 1.5 MiB (etcd's
	// request limit); a pods/ephemeralcontainers UPDATE carries it twice (object and
	// oldObject), so 4 MiB holds every review the API server can send.
	MaxRequestBytes int64
	// ReadTimeout is how long reading the body may take in total, so a client that trickles
	// it cannot hold a connection and its buffer.
	ReadTimeout time.Duration
	// RequestTimeout is the deadline for deciding one request, below the webhook timeout;
	// past it the Pod is admitted unchanged with a warning.
	RequestTimeout time.Duration
	// MaxWarnings caps the admission warnings of one response (the last one says how many
	// were left out).
	MaxWarnings int
	// MaxListedDecisions caps the decisions listed in the log line and the audit
	// annotation of one request; the counts are always complete.
	MaxListedDecisions int
	// MaxAnnotationBytes is the API server's limit on all annotations of an object
	// (256 KiB). A rewrite whose hubcache.io/original-images annotation would not fit is
	// not made: the API server would reject the Pod.
	MaxAnnotationBytes int
	// VisibilityBudget bounds the question to the cache about a Pod with imagePullSecrets;
	// without an answer in time its Docker Hub images stay (visibility-unknown).
	VisibilityBudget time.Duration
}

// DefaultLimits fit the 3 s webhook timeout in manifests/.
func DefaultLimits() Limits {
	return Limits{
		MaxRequestBytes:    4 << 20,
		ReadTimeout:        2 * time.Second,
		RequestTimeout:     2 * time.Second,
		MaxWarnings:        10,
		MaxListedDecisions: 20,
		MaxAnnotationBytes: 256 << 10,
		VisibilityBudget:   500 * time.Millisecond,
	}
}

// Validate reports a limit that is zero or negative.
func (l Limits) Validate() error {
	switch {
	case l.MaxRequestBytes <= 0:
		return fmt.Errorf("max request bytes %d: must be positive", l.MaxRequestBytes)
	case l.ReadTimeout <= 0:
		return fmt.Errorf("read timeout %s: must be positive", l.ReadTimeout)
	case l.RequestTimeout <= 0:
		return fmt.Errorf("request timeout %s: must be positive", l.RequestTimeout)
	case l.MaxWarnings < 1:
		return fmt.Errorf("max warnings %d: must be at least 1", l.MaxWarnings)
	case l.MaxListedDecisions < 0:
		return fmt.Errorf("max listed decisions %d: must not be negative", l.MaxListedDecisions)
	case l.MaxAnnotationBytes <= 0:
		return fmt.Errorf("max annotation bytes %d: must be positive", l.MaxAnnotationBytes)
	case l.VisibilityBudget <= 0 || l.VisibilityBudget >= l.RequestTimeout:
		return fmt.Errorf("visibility budget %s: must be positive and below the request timeout %s",
			l.VisibilityBudget, l.RequestTimeout)
	}
	return nil
}

// WithLimits replaces DefaultLimits.
func WithLimits(l Limits) Option { return func(h *Handler) { h.limits = l } }

// bounded wraps next so that the body is cut at MaxRequestBytes and must arrive within
// ReadTimeout, and the request's context ends at RequestTimeout. controller-runtime reads up
// to 7 MiB with no time limit of its own.
func bounded(next http.Handler, l Limits) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server may not support deadlines (httptest recorders); the size cap still holds.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(l.ReadTimeout))
		if r.Body != nil && r.Body != http.NoBody { // controller-runtime reports an empty body itself
			r.Body = http.MaxBytesReader(w, r.Body, l.MaxRequestBytes)
		}
		ctx, cancel := context.WithTimeout(r.Context(), l.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ConfigureTLS restricts the webhook's TLS to 1.2 with ECDHE and AEAD cipher suites (no CBC,
// no SHA-1 MACs, no static RSA key exchange) and TLS 1.3, whose suites are all AEAD, and to
// HTTP/1.1: the API server does not need HTTP/2, which avoids its stream-reset class of
// denial of service.
func ConfigureTLS(c *tls.Config) {
	c.MinVersion = tls.VersionTLS12
	c.CipherSuites = []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	c.NextProtos = []string{"http/1.1"}
}
