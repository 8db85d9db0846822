package cache

import (
	"context"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultTouchInterval is how often one process records an access of one digest: an object
// touched a minute ago is far from the least recently used end of any sensible budget.
const DefaultTouchInterval = time.Minute

// touchTimeout bounds one access record, so that a slow database does not slow hits down.
const touchTimeout = 2 * time.Second

// toucher rate-limits access records per digest.
type toucher struct {
	mu    sync.Mutex
	every time.Duration
	last  map[v1.Hash]time.Time
}

// due reports whether d should be touched now, and if so remembers that it was.
func (t *toucher) due(d v1.Hash, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.last[d]; ok && now.Sub(at) < t.every {
		return false
	}
	if len(t.last) >= 100_000 {
		// Bound the memory: entries older than the interval are no longer needed.
		for k, at := range t.last {
			if now.Sub(at) >= t.every {
				delete(t.last, k)
			}
		}
	}
	t.last[d] = now
	return true
}

// touch records a hit for eviction (when the metadata store supports it). Failures are
// logged only: an access record is advice to the evictor, never a reason to fail a pull.
func (c *Cache) touch(ctx context.Context, d v1.Hash) {
	if c.ev == nil || !c.touches.due(d, c.opts.now()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), touchTimeout)
	defer cancel()
	if err := c.ev.Touch(ctx, d, c.opts.now()); err != nil {
		c.log.Debug("recording an access failed", "digest", d.String(), "error", err.Error())
	}
}
