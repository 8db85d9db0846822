// Package cache is the pull-through logic: manifests by digest are served from the cache
// without asking upstream; tags are fresh for a TTL, then revalidated with a HEAD and served
// stale when upstream fails; blobs are filled once per digest, streamed to every waiting
// client while they are written, and committed only after their digest and size check out.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/upstream"
)

// Upstream is what the cache needs from the upstream client (proxy/upstream.Client).
// registry is the canonical registry name ("docker.io"); repo is the path on it.
type Upstream interface {
	HeadManifest(ctx context.Context, registry, repo, ref string) (upstream.Descriptor, error)
	// GetManifest returns the raw bytes exactly as served.
	GetManifest(ctx context.Context, registry, repo, ref string) ([]byte, upstream.Descriptor, error)
	// GetBlob returns the body and its size (-1 when upstream did not say); the cache
	// verifies the bytes.
	GetBlob(ctx context.Context, registry, repo string, d v1.Hash) (io.ReadCloser, int64, error)
	HeadBlob(ctx context.Context, registry, repo string, d v1.Hash) (int64, error)
	// RateLimit returns the last ratelimit-limit/ratelimit-remaining seen from registry.
	RateLimit(registry string) (limit, remaining int, ok bool)
}

// Defaults. Why these values is explained in docs/proxy.md.
const (
	DefaultTagTTL          = 5 * time.Minute
	DefaultFillTimeout     = 30 * time.Minute
	DefaultMaxManifestSize = 4 << 20
	// DefaultMaxFills bounds concurrent upstream downloads: each holds a 256 KiB buffer,
	// an upstream connection and a spool file.
	DefaultMaxFills = 64
	// DefaultMaxUnknownBlobSize bounds a blob upstream sends without Content-Length. Layers
	// on Docker Hub always have one; this only stops a hostile or broken upstream.
	DefaultMaxUnknownBlobSize = 4 << 30
)

// Option configures a Cache.
type Option func(*options)

type options struct {
	tagTTL          time.Duration
	fillTimeout     time.Duration
	maxManifestSize int64
	spoolDir        string
	now             func() time.Time
	logger          *slog.Logger
	registerer      prometheus.Registerer
	registries      []string
	touchInterval   time.Duration
	negativeTTL     time.Duration
	lookupTTL       time.Duration
	maxFills        int
	maxUnknownSize  int64
	verifyInterval  time.Duration
	racyWindow      *time.Duration // tests only (export_test.go); nil: racyWindow
}

// WithTagTTL sets how long a tag is served without asking upstream (default 5m). Zero
// revalidates every request.
func WithTagTTL(d time.Duration) Option { return func(o *options) { o.tagTTL = d } }

// WithFillTimeout bounds one blob fill from upstream, whether or not clients still wait
// (default 30m).
func WithFillTimeout(d time.Duration) Option { return func(o *options) { o.fillTimeout = d } }

// WithMaxManifestSize refuses upstream manifests larger than n bytes (default 4 MiB).
func WithMaxManifestSize(n int64) Option { return func(o *options) { o.maxManifestSize = n } }

// WithSpoolDir sets where blobs being filled are spooled for concurrent readers (default
// os.TempDir()).
func WithSpoolDir(dir string) Option { return func(o *options) { o.spoolDir = dir } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer registers the cache metrics there (default: a private registry).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithRegistries limits the registries the cache serves, cached content included; others
// are ErrNameUnknown. Their rate limits are exported. Default: whatever upstream accepts.
func WithRegistries(names ...string) Option {
	return func(o *options) { o.registries = append([]string(nil), names...) }
}

// WithTouchInterval sets how often one process records an access of one digest for
// eviction (default DefaultTouchInterval).
func WithTouchInterval(d time.Duration) Option { return func(o *options) { o.touchInterval = d } }

// WithNegativeTTL sets how long an upstream "not found" is remembered (default
// DefaultNegativeTTL; zero: not remembered).
func WithNegativeTTL(d time.Duration) Option { return func(o *options) { o.negativeTTL = d } }

// WithLookupTTL sets how long the warm manifest path trusts a metadata row it read or wrote
// (default DefaultLookupTTL; zero: every request reads the store).
func WithLookupTTL(d time.Duration) Option { return func(o *options) { o.lookupTTL = d } }

// WithMaxFills caps the blob fills from upstream running at once (default DefaultMaxFills;
// zero: no cap). A miss over the cap is answered 503 with Retry-After.
func WithMaxFills(n int) Option { return func(o *options) { o.maxFills = n } }

// WithMaxUnknownBlobSize caps a blob whose upstream response has no Content-Length (default
// DefaultMaxUnknownBlobSize): past it the fill fails instead of spooling without end.
func WithMaxUnknownBlobSize(n int64) Option { return func(o *options) { o.maxUnknownSize = n } }

// WithVerifyInterval sets how long a stored blob's whole read that hashed correctly vouches
// for later reads of the same unchanged object (default DefaultVerifyInterval; zero: every
// whole read is hashed).
func WithVerifyInterval(d time.Duration) Option { return func(o *options) { o.verifyInterval = d } }

// Cache implements the registry Backend on top of a blob store, a metadata store and an
// upstream client.
type Cache struct {
	blobs blobstore.Store
	meta  metadata.Store
	up    Upstream
	opts  options
	log   *slog.Logger
	m     *metrics

	// ev is meta's eviction support, nil when it has none: hits are then not touched.
	ev      metadata.Evictor
	touches *toucher

	allowed map[string]bool // nil: any registry upstream accepts

	// bodies shares one copy of each cached manifest among the requests serving it.
	bodies *bodies
	// lookups remembers the warm manifest path's metadata rows for a moment.
	lookups *lookups
	// verified remembers which stored blob versions hashed correctly, and when.
	verified *verifiedReads

	// manifests coalesces concurrent upstream manifest work per repository and reference.
	manifests singleflight.Group

	// fills are the blob fills in progress, one per digest.
	mu    sync.Mutex
	fills map[v1.Hash]*fill
	wg    sync.WaitGroup

	// base is the parent of every fill context: fills outlive requests but not Close.
	base     context.Context
	stopAll  context.CancelFunc
	closeErr error
}

// New returns a Cache. Required dependencies are arguments; the rest are options.
func New(blobs blobstore.Store, meta metadata.Store, up Upstream, opts ...Option) (*Cache, error) {
	o := options{
		tagTTL:          DefaultTagTTL,
		fillTimeout:     DefaultFillTimeout,
		maxManifestSize: DefaultMaxManifestSize,
		spoolDir:        os.TempDir(),
		now:             time.Now,
		logger:          slog.Default(),
		registerer:      prometheus.NewRegistry(),
		touchInterval:   DefaultTouchInterval,
		negativeTTL:     DefaultNegativeTTL,
		lookupTTL:       DefaultLookupTTL,
		maxFills:        DefaultMaxFills,
		maxUnknownSize:  DefaultMaxUnknownBlobSize,
		verifyInterval:  DefaultVerifyInterval,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(o.spoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("cache spool directory: %w", err)
	}
	c := &Cache{
		blobs:   blobs,
		meta:    meta,
		up:      up,
		opts:    o,
		log:     o.logger,
		fills:   map[v1.Hash]*fill{},
		bodies:  newBodies(),
		lookups: newLookups(o.lookupTTL),

		verified: newVerifiedReads(o.verifyInterval, o.now),

		touches: &toucher{every: o.touchInterval, last: map[v1.Hash]time.Time{}},
	}
	if o.racyWindow != nil {
		c.verified.racy = *o.racyWindow
	}
	c.ev, _ = meta.(metadata.Evictor)
	if o.registries != nil {
		c.allowed = map[string]bool{}
		for _, r := range o.registries {
			c.allowed[r] = true
		}
	}
	m, err := newMetrics(o.registerer, up, o.registries, c.inFlight)
	if err != nil {
		return nil, err
	}
	c.m = m
	if o.negativeTTL > 0 {
		c.up = newNegativeUpstream(up, o.negativeTTL, o.now, m.negative.Inc)
	}
	c.base, c.stopAll = context.WithCancel(context.Background())
	return c, nil
}

// Close cancels the fills in progress and waits for them to end.
func (c *Cache) Close() error {
	c.stopAll()
	c.wg.Wait()
	return c.closeErr
}

func (c *Cache) inFlight() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return float64(len(c.fills))
}

// checkRegistry refuses registries that are not configured, before any lookup or fetch.
func (c *Cache) checkRegistry(repo Repo) error {
	if c.allowed != nil && !c.allowed[repo.Registry] {
		return fmt.Errorf("%w: registry %q is not served by this cache", ErrNameUnknown, repo.Registry)
	}
	return nil
}

// kind of content, for errors and metrics.
type kind string

const (
	kindManifest kind = "manifest"
	kindBlob     kind = "blob"
)

// upstreamError maps an upstream failure (nothing usable cached) to the cache's errors.
func upstreamError(err error, k kind) error {
	var rl *upstream.RateLimitError
	switch {
	case errors.As(err, &rl):
		return fmt.Errorf("%w: %w", &TooManyRequestsError{RetryAfter: rl.RetryAfter}, err)
	case errors.Is(err, upstream.ErrUnknownRegistry):
		return fmt.Errorf("%w: %w", ErrNameUnknown, err)
	case errors.Is(err, upstream.ErrNotFound):
		if k == kindBlob {
			return fmt.Errorf("%w: %w", ErrBlobUnknown, err)
		}
		return fmt.Errorf("%w: %w", ErrManifestUnknown, err)
	case errors.Is(err, upstream.ErrUnauthorized):
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case errors.Is(err, upstream.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrUnavailable):
		return err
	default:
		// Network errors, timeouts, 5xx, digest mismatches: the client may retry.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
}

// outcome classifies an upstream call for the metrics.
func outcome(err error) string {
	var rl *upstream.RateLimitError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &rl):
		return "rate_limited"
	case errors.Is(err, upstream.ErrNotFound):
		return "not_found"
	case errors.Is(err, upstream.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, upstream.ErrDigestMismatch):
		return "digest_mismatch"
	case errors.Is(err, upstream.ErrTooLarge):
		return "too_large"
	default:
		return "unavailable"
	}
}
