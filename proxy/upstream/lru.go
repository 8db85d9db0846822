package upstream

import (
	"container/list"
	"net/http"
	"sync"
	"time"
)

// TransportCache keeps the most recently used per-repository transports, each holding a
// token: the token handshake (a ping and a token request) then happens once per repository,
// not on every request. A Bearer transport widens its scopes as it meets new repositories,
// which is why entries are per repository. The proxy's Client and the node's fallback both
// use it. It is safe for concurrent use.
type TransportCache struct {
	mu     sync.Mutex
	max    int
	maxAge time.Duration
	now    func() time.Time
	order  *list.List // of *cacheEntry, most recent first
	byKey  map[string]*list.Element
}

type cacheEntry struct {
	key     string
	rt      http.RoundTripper
	created time.Time
}

// NewTransportCache keeps at most max transports; with maxAge > 0 an entry older than that
// is built again, so rotated credentials are picked up. now is the clock (nil: time.Now).
func NewTransportCache(max int, maxAge time.Duration, now func() time.Time) *TransportCache {
	if now == nil {
		now = time.Now
	}
	return &TransportCache{max: max, maxAge: maxAge, now: now, order: list.New(), byKey: map[string]*list.Element{}}
}

// Get returns the transport stored under key unless it is missing or too old.
func (c *TransportCache) Get(key string) (http.RoundTripper, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	ent := e.Value.(*cacheEntry)
	if c.maxAge > 0 && c.now().Sub(ent.created) >= c.maxAge {
		c.order.Remove(e)
		delete(c.byKey, key)
		return nil, false
	}
	c.order.MoveToFront(e)
	return ent.rt, true
}

// Add stores rt unless another caller stored one for key first; it returns the stored one.
func (c *TransportCache) Add(key string, rt http.RoundTripper) http.RoundTripper {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*cacheEntry).rt
	}
	c.byKey[key] = c.order.PushFront(&cacheEntry{key: key, rt: rt, created: c.now()})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry).key)
	}
	return rt
}

// Remove forgets key (its credentials were refused: start from scratch next time).
func (c *TransportCache) Remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.Remove(e)
		delete(c.byKey, key)
	}
}

// Len is the number of transports kept.
func (c *TransportCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
