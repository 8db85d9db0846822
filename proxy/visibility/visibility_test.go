package visibility_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/hubcache/hubcache/proxy/visibility"
)

var (
	nginx   = cache.Repo{Registry: "docker.io", Path: "library/nginx"}
	billing = cache.Repo{Registry: "docker.io", Path: "acme/billing"}
)

// prober answers HEADs from a table of errors per repository and counts them. release, when
// set, holds every HEAD until closed.
type prober struct {
	mu      sync.Mutex
	answers map[string]error
	calls   map[string]int
	release chan struct{}
	started atomic.Int32
}

func newProber() *prober { return &prober{answers: map[string]error{}, calls: map[string]int{}} }

func (p *prober) set(repo cache.Repo, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers[repo.Path] = err
}

func (p *prober) count(repo cache.Repo) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[repo.Path]
}

func (p *prober) HeadManifest(ctx context.Context, registry, repo, ref string) (upstream.Descriptor, error) {
	p.started.Add(1)
	if p.release != nil {
		select {
		case <-p.release:
		case <-ctx.Done():
			return upstream.Descriptor{}, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[repo]++
	if ref != "latest" {
		return upstream.Descriptor{}, fmt.Errorf("unexpected ref %q", ref)
	}
	return upstream.Descriptor{}, p.answers[repo]
}

func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.New(t.Context(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newChecker(t *testing.T, s visibility.Store, p visibility.Prober, opts ...visibility.Option) *visibility.Checker {
	t.Helper()
	c, err := visibility.New(s, p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	denied      = fmt.Errorf("%w: status 401 UNAUTHORIZED", upstream.ErrUnauthorized)
	notFound    = fmt.Errorf("%w: status 404", upstream.ErrNotFound)
	unreachable = fmt.Errorf("%w: dial tcp: connection refused", upstream.ErrUnavailable)
)

func TestAnonymousAnswersDecideWhatIsServed(t *testing.T) {
	tests := []struct {
		name      string
		upstream  error
		allow     []string
		wantState visibility.State
		wantErr   error
	}{
		{"a repository anonymous upstream serves is public and served", nil, nil, visibility.Public, nil},
		{"a missing tag still means the anonymous token may pull", notFound, nil, visibility.Public, nil},
		{"a denied anonymous HEAD means private, refused", denied, nil, visibility.Private, visibility.ErrPrivate},
		{"a rate-limited check with nothing known is unknown, refused", &upstream.RateLimitError{}, nil, visibility.Unknown, visibility.ErrUnknown},
		{"an unreachable upstream with nothing known is unknown, refused", unreachable, nil, visibility.Unknown, visibility.ErrUnknown},
		{"an allow-listed private repository is served", denied, []string{"docker.io/acme/*"}, visibility.Private, nil},
		{"a pattern for another namespace does not allow it", denied, []string{"docker.io/acme2/*", "ghcr.io/acme/*"}, visibility.Private, visibility.ErrPrivate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newProber()
			p.set(billing, tc.upstream)
			c := newChecker(t, newStore(t), p, visibility.WithAllow(tc.allow...))
			a := c.Lookup(t.Context(), billing)
			if a.Visibility != tc.wantState || a.Served != (tc.wantErr == nil) {
				t.Errorf("Lookup = %+v, want %s served=%v", a, tc.wantState, tc.wantErr == nil)
			}
			err := c.Authorize(t.Context(), billing)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Authorize = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestRefusalsMapToTheCacheSentinels(t *testing.T) {
	if !errors.Is(visibility.ErrPrivate, cache.ErrUnauthorized) {
		t.Error("ErrPrivate does not wrap cache.ErrUnauthorized (403 DENIED)")
	}
	if !errors.Is(visibility.ErrUnknown, cache.ErrUnavailable) {
		t.Error("ErrUnknown does not wrap cache.ErrUnavailable (503 UNAVAILABLE)")
	}
}

func TestAnswersAreRememberedSharedAndRecheckedAfterTheTTL(t *testing.T) {
	store := newStore(t)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newProber()
	p.set(billing, denied)
	first := newChecker(t, store, p, visibility.WithTTL(time.Hour), visibility.WithClock(clk.Now))
	for range 3 {
		if err := first.Authorize(t.Context(), billing); !errors.Is(err, visibility.ErrPrivate) {
			t.Fatalf("Authorize = %v, want ErrPrivate", err)
		}
	}
	if n := p.count(billing); n != 1 {
		t.Fatalf("%d upstream checks for three requests, want 1", n)
	}
	rec, err := store.GetVisibility(t.Context(), billing.String())
	if err != nil || rec.Visibility != metadata.Private {
		t.Fatalf("stored answer %+v, %v; want private", rec, err)
	}

	// A second replica on the same store does not ask upstream again.
	second := newChecker(t, store, p, visibility.WithTTL(time.Hour), visibility.WithClock(clk.Now))
	if a := second.Lookup(t.Context(), billing); a.Visibility != visibility.Private || a.Served {
		t.Errorf("second replica: %+v, want private, not served", a)
	}
	if n := p.count(billing); n != 1 {
		t.Errorf("the second replica asked upstream: %d checks", n)
	}

	// After the TTL the repository is asked again, and a change upstream is picked up.
	p.set(billing, nil)
	clk.Add(time.Hour + time.Second)
	if err := first.Authorize(t.Context(), billing); err != nil {
		t.Errorf("after the TTL, now public: Authorize = %v", err)
	}
	if n := p.count(billing); n != 2 {
		t.Errorf("%d upstream checks after the TTL, want 2", n)
	}
}

func TestAKnownAnswerIsKeptWhileUpstreamIsDown(t *testing.T) {
	store := newStore(t)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := newProber()
	p.set(nginx, nil)
	p.set(billing, denied)
	c := newChecker(t, store, p, visibility.WithTTL(time.Minute), visibility.WithClock(clk.Now))
	c.Lookup(t.Context(), nginx)
	c.Lookup(t.Context(), billing)

	p.set(nginx, unreachable)
	p.set(billing, unreachable)
	clk.Add(time.Hour)
	if a := c.Lookup(t.Context(), nginx); a.Visibility != visibility.Public || !a.Served || !a.Stale {
		t.Errorf("public repository while upstream is down: %+v, want stale public, served", a)
	}
	if err := c.Authorize(t.Context(), billing); !errors.Is(err, visibility.ErrPrivate) {
		t.Errorf("private repository while upstream is down: %v, want ErrPrivate", err)
	}
}

func TestAllowListedRepositoriesAreServedWithoutAskingUpstream(t *testing.T) {
	p := newProber()
	p.set(billing, unreachable)
	c := newChecker(t, newStore(t), p, visibility.WithAllow("docker.io/acme/*"))
	if err := c.Authorize(t.Context(), billing); err != nil {
		t.Fatalf("Authorize = %v", err)
	}
	if n := p.count(billing); n != 0 {
		t.Errorf("%d upstream checks for an allow-listed repository", n)
	}
}

func TestConcurrentChecksOfOneRepositoryCollapseToOneUpstreamRequest(t *testing.T) {
	p := newProber()
	p.release = make(chan struct{})
	p.set(billing, denied)
	c := newChecker(t, newStore(t), p)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- c.Authorize(context.Background(), billing) })
	}
	// Let the first check reach upstream, then answer it.
	for p.started.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the others join the flight
	close(p.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, visibility.ErrPrivate) {
			t.Errorf("Authorize = %v, want ErrPrivate", err)
		}
	}
	if got := p.count(billing); got != 1 {
		t.Errorf("%d upstream checks for %d concurrent requests, want 1", got, n)
	}
}

func TestInvalidAllowListPatternsAreRejected(t *testing.T) {
	for _, bad := range []string{"docker.io/acme/[", " "} {
		if _, err := visibility.New(newStore(t), newProber(), visibility.WithAllow(bad)); err == nil {
			t.Errorf("pattern %q was accepted", bad)
		}
	}
}

func TestATokenEndpointRefusingEveryoneRefusesForNowButIsNotRemembered(t *testing.T) {
	store := newStore(t)
	p := newProber()
	p.set(nginx, fmt.Errorf("fetching token: %w", upstream.ErrTokenRefused))
	c := newChecker(t, store, p)
	if err := c.Authorize(t.Context(), nginx); !errors.Is(err, visibility.ErrPrivate) {
		t.Fatalf("while upstream refuses every token: %v, want ErrPrivate", err)
	}
	if _, err := store.GetVisibility(t.Context(), nginx.String()); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("the refusal was recorded (%v); it says nothing about the repository", err)
	}

	p.set(nginx, nil)
	if err := c.Authorize(t.Context(), nginx); err != nil {
		t.Errorf("once upstream issues tokens again: %v, want served", err)
	}
	if got := p.count(nginx); got != 2 {
		t.Errorf("%d upstream checks, want 2 (the refusal was not remembered)", got)
	}
}
