package node

import (
	"sync"
	"time"
)

// result is what one forwarded request taught us about the proxy.
type result int

const (
	// resultUnknown: the request ended without telling (the client went away first).
	resultUnknown result = iota
	resultReachable
	resultUnreachable
)

// breaker remembers whether the proxy is reachable, so that requests do not each wait on a
// dead proxy before falling back. After threshold consecutive failures it opens: requests go
// straight to upstream. After coolDown one request is let through to the proxy as a probe;
// if it gets an answer the breaker closes and forwarding resumes.
type breaker struct {
	threshold int
	coolDown  time.Duration
	now       func() time.Time

	mu       sync.Mutex
	failures int
	open     bool
	probing  bool
	retryAt  time.Time
	since    time.Time // when the current state began
	lastErr  string
}

func newBreaker(threshold int, coolDown time.Duration, now func() time.Time) *breaker {
	if threshold < 1 {
		threshold = 1
	}
	return &breaker{threshold: threshold, coolDown: coolDown, now: now, since: now()}
}

// allow reports whether this request should go to the proxy, and whether it is the probe
// of an open breaker (whose result must be reported with probe=true).
func (b *breaker) allow() (forward, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true, false
	}
	if b.probing || b.now().Before(b.retryAt) {
		return false, false
	}
	b.probing = true
	return true, true
}

// report records the outcome of a forwarded request. changed is true when the breaker
// opened or closed because of it.
func (b *breaker) report(r result, probe bool, cause string) (changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch r {
	case resultReachable:
		b.failures = 0
		if b.open {
			b.open = false
			b.since = b.now()
			return true
		}
	case resultUnreachable:
		b.failures++
		b.lastErr = cause
		if b.open {
			b.retryAt = b.now().Add(b.coolDown)
			return false
		}
		if b.failures >= b.threshold {
			b.open = true
			b.since = b.now()
			b.retryAt = b.now().Add(b.coolDown)
			return true
		}
	}
	return false
}

// breakerState is a snapshot for /readyz and metrics.
type breakerState struct {
	Open    bool
	Since   time.Time
	LastErr string
}

func (b *breaker) state() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return breakerState{Open: b.open, Since: b.since, LastErr: b.lastErr}
}
