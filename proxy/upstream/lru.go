package upstream

import (
	"container/list"
	"net/http"
	"sync"
)

// transportCache keeps the most recently used per-repository transports; each holds a token.
type transportCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cacheEntry, most recent first
	byKey map[string]*list.Element
}

type cacheEntry struct {
	key string
	rt  http.RoundTripper
}

func newTransportCache(max int) *transportCache {
	return &transportCache{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

func (c *transportCache) get(key string) (http.RoundTripper, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).rt, true
}

// add stores rt unless another caller stored one for key first; it returns the stored one.
func (c *transportCache) add(key string, rt http.RoundTripper) http.RoundTripper {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*cacheEntry).rt
	}
	c.byKey[key] = c.order.PushFront(&cacheEntry{key: key, rt: rt})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cacheEntry).key)
	}
	return rt
}

func (c *transportCache) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.order.Remove(e)
		delete(c.byKey, key)
	}
}

func (c *transportCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
