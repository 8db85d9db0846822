package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/upstream"
)

// DefaultNegativeTTL is how long an upstream "not found" is remembered: long enough that a
// client retrying a missing tag in a loop costs one upstream request per period, short
// enough that a tag pushed just after a miss shows up soon.
const DefaultNegativeTTL = 30 * time.Second

// negativeMaxEntries bounds the memory of the negative cache: made-up names cost at most this
// many entries (about 200 bytes each).
const negativeMaxEntries = 10000

// errNegative marks a "not found" answered from the negative cache.
var errNegative = errors.New("remembered as not found upstream")

// negativeUpstream remembers upstream's 404s for a short TTL so that repeated requests for
// a missing tag, digest or repository spend no upstream quota. Concurrent asks for the same
// name are answered by one upstream request (the cache already coalesces manifest work and
// blob fills; HEADs are coalesced here).
type negativeUpstream struct {
	Upstream
	ttl   time.Duration
	now   func() time.Time
	onHit func()

	mu      sync.Mutex
	entries map[string]time.Time // key → expiry
	heads   map[string]*headCall
}

type headCall struct {
	done chan struct{}
	size int64
	desc upstream.Descriptor
	err  error
}

func newNegativeUpstream(up Upstream, ttl time.Duration, now func() time.Time, onHit func()) *negativeUpstream {
	return &negativeUpstream{Upstream: up, ttl: ttl, now: now, onHit: onHit, entries: map[string]time.Time{}, heads: map[string]*headCall{}}
}

func manifestKey(registry, repo, ref string) string {
	return "m\x00" + registry + "\x00" + repo + "\x00" + ref
}
func blobKey(registry, repo string, d v1.Hash) string {
	return "b\x00" + registry + "\x00" + repo + "\x00" + d.String()
}

// missing reports whether key was not found upstream within the TTL.
func (n *negativeUpstream) missing(key string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	exp, ok := n.entries[key]
	if !ok {
		return nil
	}
	if !n.now().Before(exp) {
		delete(n.entries, key)
		return nil
	}
	n.onHit()
	return fmt.Errorf("%w: %w", upstream.ErrNotFound, errNegative)
}

// remember records a "not found" answer; other answers pass through.
func (n *negativeUpstream) remember(key string, err error) {
	if !errors.Is(err, upstream.ErrNotFound) || errors.Is(err, errNegative) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	if len(n.entries) >= negativeMaxEntries {
		for k, exp := range n.entries {
			if !now.Before(exp) {
				delete(n.entries, k)
			}
		}
		for k := range n.entries {
			if len(n.entries) < negativeMaxEntries {
				break
			}
			delete(n.entries, k) // an arbitrary victim: forgetting early only costs a request
		}
	}
	n.entries[key] = now.Add(n.ttl)
}

// head runs fn once for concurrent callers of key.
// fn gets a context detached from the first caller, so that one client leaving does not fail
// the others (the upstream client bounds HEADs with its own timeout).
func (n *negativeUpstream) head(ctx context.Context, key string, fn func(context.Context) (int64, upstream.Descriptor, error)) (int64, upstream.Descriptor, error) {
	if err := n.missing(key); err != nil {
		return 0, upstream.Descriptor{}, err
	}
	n.mu.Lock()
	call, joined := n.heads[key]
	if !joined {
		call = &headCall{done: make(chan struct{})}
		n.heads[key] = call
	}
	n.mu.Unlock()
	if !joined {
		call.size, call.desc, call.err = fn(context.WithoutCancel(ctx))
		n.remember(key, call.err)
		n.mu.Lock()
		delete(n.heads, key)
		n.mu.Unlock()
		close(call.done)
	}
	select {
	case <-call.done:
		return call.size, call.desc, call.err
	case <-ctx.Done():
		return 0, upstream.Descriptor{}, ctx.Err()
	}
}

func (n *negativeUpstream) HeadManifest(ctx context.Context, registry, repo, ref string) (upstream.Descriptor, error) {
	_, desc, err := n.head(ctx, "H"+manifestKey(registry, repo, ref), func(ctx context.Context) (int64, upstream.Descriptor, error) {
		if err := n.missing(manifestKey(registry, repo, ref)); err != nil {
			return 0, upstream.Descriptor{}, err
		}
		d, err := n.Upstream.HeadManifest(ctx, registry, repo, ref)
		n.remember(manifestKey(registry, repo, ref), err)
		return 0, d, err
	})
	return desc, err
}

func (n *negativeUpstream) GetManifest(ctx context.Context, registry, repo, ref string) ([]byte, upstream.Descriptor, error) {
	key := manifestKey(registry, repo, ref)
	if err := n.missing(key); err != nil {
		return nil, upstream.Descriptor{}, err
	}
	body, desc, err := n.Upstream.GetManifest(ctx, registry, repo, ref)
	n.remember(key, err)
	return body, desc, err
}

func (n *negativeUpstream) GetBlob(ctx context.Context, registry, repo string, d v1.Hash) (io.ReadCloser, int64, error) {
	key := blobKey(registry, repo, d)
	if err := n.missing(key); err != nil {
		return nil, 0, err
	}
	rc, size, err := n.Upstream.GetBlob(ctx, registry, repo, d)
	n.remember(key, err)
	return rc, size, err
}

func (n *negativeUpstream) HeadBlob(ctx context.Context, registry, repo string, d v1.Hash) (int64, error) {
	size, _, err := n.head(ctx, "H"+blobKey(registry, repo, d), func(ctx context.Context) (int64, upstream.Descriptor, error) {
		if err := n.missing(blobKey(registry, repo, d)); err != nil {
			return 0, upstream.Descriptor{}, err
		}
		s, err := n.Upstream.HeadBlob(ctx, registry, repo, d)
		n.remember(blobKey(registry, repo, d), err)
		return s, upstream.Descriptor{}, err
	})
	return size, err
}

// leaser returns the upstream's manifest lease support, looking through the negative cache.
func (c *Cache) leaser() (ManifestLeaser, bool) {
	up := c.up
	if n, ok := up.(*negativeUpstream); ok {
		up = n.Upstream
	}
	l, ok := up.(ManifestLeaser)
	return l, ok
}
