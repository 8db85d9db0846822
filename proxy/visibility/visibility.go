// Package visibility decides whether the proxy may serve a repository. The proxy holds Docker
// Hub credentials that raise the pull limit, but they must never widen what can be read: a
// repository is served only when anonymous upstream serves it (an anonymous token and a
// manifest HEAD, which Docker Hub does not count against the pull limit), or when the
// operator allow-lists it.
//
// Answers are remembered in the metadata store, so replicas share them, and trusted for a TTL.
// When upstream cannot be asked, a previously known answer is kept (stale-if-error); with no
// answer at all the repository is refused as unknown and nothing is fetched with credentials.
package visibility

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/upstream"
)

// Defaults for the options.
const (
	// DefaultTTL is how long an answer is trusted before upstream is asked again. It bounds
	// how long a repository that turned private upstream is still served from the cache.
	DefaultTTL = 10 * time.Minute
	// DefaultCheckTimeout bounds one anonymous check upstream.
	DefaultCheckTimeout = 10 * time.Second
	// memoryEntries bounds the in-process copy of fresh answers; when full it starts over.
	memoryEntries = 4096
	// probeTag is the reference the anonymous HEAD asks for. Any answer but "denied" means
	// the anonymous token may pull the repository: 200 and 404 (no such tag) alike.
	probeTag = "latest"
)

// Errors the Guard returns; both wrap a proxy/cache sentinel so the registry handler maps
// them to OCI errors without knowing this package.
var (
	// ErrPrivate: anonymous upstream refuses the repository and it is not allow-listed.
	// Answered 403 DENIED.
	ErrPrivate = fmt.Errorf("repository is not public upstream, and this cache serves only public repositories: %w", cache.ErrUnauthorized)
	// ErrUnknown: the repository was never checked and upstream cannot be asked now.
	// Answered 503 UNAVAILABLE.
	ErrUnknown = fmt.Errorf("repository visibility could not be checked upstream: %w", cache.ErrUnavailable)
)

// State is one of "public", "private" or "unknown".
type State string

// The states of an Answer.
const (
	Public  State = State(metadata.Public)
	Private State = State(metadata.Private)
	Unknown State = "unknown"
)

// Answer is what the proxy knows about a repository.
type Answer struct {
	Repo       cache.Repo
	Visibility State
	// Served says whether the proxy serves the repository: public, or allow-listed.
	Served bool
	// CheckedAt is when upstream gave the answer (zero for Unknown).
	CheckedAt time.Time
	// Stale is set when the answer is older than the TTL and upstream could not confirm it.
	Stale bool
	// NotConfigured is set when the registry is not one the proxy fetches from: there is
	// nothing to protect, and the cache itself answers NAME_UNKNOWN.
	NotConfigured bool
}

// Prober asks upstream for a manifest anonymously; upstream.Client built with an anonymous
// keychain is the implementation.
type Prober interface {
	HeadManifest(ctx context.Context, registry, repo, ref string) (upstream.Descriptor, error)
}

// Store is where answers are shared between replicas; metadata.Store implements it.
type Store interface {
	GetVisibility(ctx context.Context, repo string) (metadata.RepositoryVisibility, error)
	PutVisibility(ctx context.Context, repo string, v metadata.RepositoryVisibility) error
}

// Option configures a Checker.
type Option func(*Checker)

// WithTTL sets how long an answer is trusted (default DefaultTTL).
func WithTTL(d time.Duration) Option {
	return func(c *Checker) {
		if d > 0 {
			c.ttl = d
		}
	}
}

// WithCheckTimeout bounds one upstream check (default DefaultCheckTimeout).
func WithCheckTimeout(d time.Duration) Option {
	return func(c *Checker) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithAllow sets the allow-list: glob patterns (path.Match) on "registry/repository", e.g.
// "docker.io/acme/*". Repositories matching one are served whatever upstream says.
func WithAllow(patterns ...string) Option {
	return func(c *Checker) { c.allow = append(c.allow, patterns...) }
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(c *Checker) { c.now = now } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *Checker) { c.log = l } }

// WithRegisterer registers the checker's metrics there (default: not exported).
func WithRegisterer(r prometheus.Registerer) Option { return func(c *Checker) { c.reg = r } }

// Checker answers whether a repository is served. Safe for concurrent use.
type Checker struct {
	store   Store
	prober  Prober
	ttl     time.Duration
	timeout time.Duration
	allow   []string
	now     func() time.Time
	log     *slog.Logger
	reg     prometheus.Registerer

	flight singleflight.Group
	mu     sync.Mutex
	memory map[string]metadata.RepositoryVisibility

	checks  *prometheus.CounterVec
	refused *prometheus.CounterVec
}

// New returns a Checker that remembers answers in store and asks prober, which must not
// carry credentials.
func New(store Store, prober Prober, opts ...Option) (*Checker, error) {
	if store == nil || prober == nil {
		return nil, errors.New("visibility: a store and a prober are required")
	}
	c := &Checker{
		store: store, prober: prober,
		ttl: DefaultTTL, timeout: DefaultCheckTimeout,
		now: time.Now, log: slog.Default(), reg: prometheus.NewRegistry(),
		memory: map[string]metadata.RepositoryVisibility{},
	}
	for _, o := range opts {
		o(c)
	}
	if err := ValidatePatterns(c.allow); err != nil {
		return nil, err
	}
	c.checks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hubcache_visibility_checks_total",
		Help: "Anonymous upstream checks of a repository's visibility, by result (public, private, error).",
	}, []string{"result"})
	c.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hubcache_visibility_refusals_total",
		Help: "Requests refused because the repository is not served, by reason (private-repository, visibility-unknown).",
	}, []string{"reason"})
	for _, m := range []prometheus.Collector{c.checks, c.refused} {
		if err := c.reg.Register(m); err != nil {
			return nil, fmt.Errorf("visibility metrics: %w", err)
		}
	}
	for _, r := range []string{"public", "private", "error"} {
		c.checks.WithLabelValues(r)
	}
	for _, r := range []string{"private-repository", "visibility-unknown"} {
		c.refused.WithLabelValues(r)
	}
	return c, nil
}

// ValidatePatterns checks allow-list patterns: path.Match syntax, not empty.
func ValidatePatterns(patterns []string) error {
	for _, p := range patterns {
		if strings.TrimSpace(p) == "" {
			return errors.New("visibility: empty allow-list pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("visibility: allow-list pattern %q: %w", p, err)
		}
	}
	return nil
}

// Allowed reports whether repo matches the allow-list.
func (c *Checker) Allowed(repo cache.Repo) bool {
	name := repo.String()
	for _, p := range c.allow {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// Authorize returns nil when the proxy may serve repo, ErrPrivate or ErrUnknown otherwise.
// Allow-listed repositories are served without asking upstream.
func (c *Checker) Authorize(ctx context.Context, repo cache.Repo) error {
	if c.Allowed(repo) {
		return nil
	}
	a := c.Lookup(ctx, repo)
	switch {
	case a.Served, a.NotConfigured:
		return nil
	case a.Visibility == Private:
		c.refused.WithLabelValues("private-repository").Inc()
		return fmt.Errorf("%s: %w", repo, ErrPrivate)
	default:
		c.refused.WithLabelValues("visibility-unknown").Inc()
		return fmt.Errorf("%s: %w", repo, ErrUnknown)
	}
}

// Lookup returns what is known about repo, asking upstream when the answer is missing or
// older than the TTL. It never fails: an answer that cannot be had is Unknown.
func (c *Checker) Lookup(ctx context.Context, repo cache.Repo) Answer {
	v, ok, stale := c.known(ctx, repo)
	notConfigured := false
	if !ok || stale {
		fresh, err := c.refresh(ctx, repo)
		switch {
		case errors.Is(err, upstream.ErrUnknownRegistry):
			notConfigured = true
		case err == nil:
			v, ok, stale = fresh, true, false
		case ok:
			c.log.Warn("visibility check failed; keeping the previous answer", "repository", repo.String(),
				"visibility", v.Visibility, "checked_at", v.CheckedAt, "error", err)
		default:
			c.log.Warn("visibility check failed and nothing is known; refusing the repository", "repository", repo.String(), "error", err)
		}
	}
	a := Answer{Repo: repo, Visibility: Unknown, NotConfigured: notConfigured}
	if ok {
		a.Visibility, a.CheckedAt, a.Stale = State(v.Visibility), v.CheckedAt, stale
	}
	a.Served = a.Visibility == Public || c.Allowed(repo)
	return a
}

// known returns the remembered answer: from memory when fresh, else from the store.
func (c *Checker) known(ctx context.Context, repo cache.Repo) (v metadata.RepositoryVisibility, ok, stale bool) {
	key := repo.String()
	now := c.now()
	c.mu.Lock()
	v, ok = c.memory[key]
	c.mu.Unlock()
	if ok && now.Sub(v.CheckedAt) < c.ttl {
		return v, true, false
	}
	stored, err := c.store.GetVisibility(ctx, key)
	switch {
	case err == nil:
		if !ok || stored.CheckedAt.After(v.CheckedAt) {
			v, ok = stored, true
		}
	case !errors.Is(err, metadata.ErrNotFound):
		// The store being down must not open the door: fall back to memory or to asking.
		c.log.Warn("reading repository visibility failed", "repository", key, "error", err)
	}
	if !ok {
		return v, false, false
	}
	if now.Sub(v.CheckedAt) < c.ttl {
		c.remember(key, v)
		return v, true, false
	}
	return v, true, true
}

func (c *Checker) remember(key string, v metadata.RepositoryVisibility) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.memory) >= memoryEntries {
		clear(c.memory)
	}
	c.memory[key] = v
}

// refresh asks upstream once for all concurrent callers about one repository, records a
// definite answer, and returns it.
func (c *Checker) refresh(ctx context.Context, repo cache.Repo) (metadata.RepositoryVisibility, error) {
	key := repo.String()
	ch := c.flight.DoChan(key, func() (any, error) {
		// A caller that missed the answer just before another flight recorded it must not
		// ask upstream again.
		c.mu.Lock()
		v, ok := c.memory[key]
		c.mu.Unlock()
		if ok && c.now().Sub(v.CheckedAt) < c.ttl {
			return v, nil
		}
		// Detached from the first caller: one leaving must not fail the others.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		vis, durable, err := c.probe(pctx, repo)
		if err != nil {
			c.checks.WithLabelValues("error").Inc()
			return nil, err
		}
		c.checks.WithLabelValues(string(vis)).Inc()
		v = metadata.RepositoryVisibility{Visibility: vis, CheckedAt: c.now()}
		if !durable {
			return v, nil
		}
		if err := c.store.PutVisibility(pctx, key, v); err != nil {
			c.log.Warn("recording repository visibility failed", "repository", key, "error", err)
		}
		c.remember(key, v)
		return v, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return metadata.RepositoryVisibility{}, r.Err
		}
		return r.Val.(metadata.RepositoryVisibility), nil
	case <-ctx.Done():
		return metadata.RepositoryVisibility{}, fmt.Errorf("visibility of %s: %w", key, ctx.Err())
	}
}

// probe sends the anonymous manifest HEAD: denied means private; found or "no such tag"
// means the anonymous token may pull; anything else is no answer. A token endpoint that
// refuses even an anonymous token says nothing about this repository (it refuses everyone):
// the repository is refused for now, but that answer is not remembered (durable false), so
// it is asked again as soon as upstream issues tokens again.
func (c *Checker) probe(ctx context.Context, repo cache.Repo) (vis metadata.Visibility, durable bool, err error) {
	_, err = c.prober.HeadManifest(ctx, repo.Registry, repo.Path, probeTag)
	switch {
	case err == nil, errors.Is(err, upstream.ErrNotFound):
		return metadata.Public, true, nil
	case errors.Is(err, upstream.ErrTokenRefused):
		return metadata.Private, false, nil
	case errors.Is(err, upstream.ErrUnauthorized):
		return metadata.Private, true, nil
	default:
		return "", false, fmt.Errorf("anonymous check of %s: %w", repo, err)
	}
}
