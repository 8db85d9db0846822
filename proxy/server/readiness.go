package server

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultUnreadyAfter is how long a store may fail before the replica reports not ready.
// Shorter outages are served in the degraded mode (blobs passed through, digests confirmed
// upstream) and the replica stays in the Service; a store still failing after this long is a
// broken install or a real outage, and must show in `kubectl get pods` and in alerts.
const DefaultUnreadyAfter = 2 * time.Minute

// readiness turns store checks and the drain state into the /readyz answer.
type readiness struct {
	grace time.Duration // <= 0: store failures never make the replica unready
	now   func() time.Time

	mu           sync.Mutex
	failingSince map[string]time.Time // store → first failed check of its current outage

	draining atomic.Bool
}

func newReadiness(grace time.Duration, now func() time.Time) *readiness {
	return &readiness{grace: grace, now: now, failingSince: map[string]time.Time{}}
}

// observe records one round of checks: a store that answers ends its outage.
func (r *readiness) observe(cs []check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.now()
	for _, c := range cs {
		if c.err == nil {
			delete(r.failingSince, c.name)
		} else if _, ok := r.failingSince[c.name]; !ok {
			r.failingSince[c.name] = t
		}
	}
}

// verdict is the /readyz status for checks just observed: "draining" and "unready" answer
// 503, "degraded" (a store failing for less than the grace period) and "ready" answer 200.
func (r *readiness) verdict(cs []check) (status string, code int) {
	if r.draining.Load() {
		return "draining", http.StatusServiceUnavailable
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	status, code = "ready", http.StatusOK
	for _, c := range cs {
		if c.err == nil {
			continue
		}
		status = "degraded"
		if since, ok := r.failingSince[c.name]; ok && r.grace > 0 && r.now().Sub(since) >= r.grace {
			return "unready", http.StatusServiceUnavailable
		}
	}
	return status, code
}

// WithUnreadyAfter sets how long a store may keep failing before /readyz answers 503
// (default DefaultUnreadyAfter; 0 or less: never, the replica stays ready and degraded).
func WithUnreadyAfter(d time.Duration) Option {
	return func(o *options) { o.unreadyAfter = d; o.unreadyAfterSet = true }
}

// Drain makes /readyz answer 503 from now on while the registry API keeps serving: the
// replica leaves the Service endpoints before its listener closes (see docs/operations.md).
func (s *Server) Drain() { s.ready.draining.Store(true) }
