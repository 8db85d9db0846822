// Package visibility asks hubcache's proxy which Docker Hub repositories it serves
// (GET /hubcache/v1/visibility), so the webhook never moves an image the kubelet could not
// then pull from the cache. Answers are cached for minutes in a bounded map; a question
// costs at most one request per Pod and never more than the caller's deadline.
package visibility

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// Path is the proxy's visibility endpoint (contract).
const Path = "/hubcache/v1/visibility"

// MaxRepositories is the most repositories one request may name (contract).
const MaxRepositories = 64

// maxResponseBytes bounds the answer: 64 repositories of at most 255 characters each.
const maxResponseBytes = 64 << 10

// Client asks the proxy and remembers its answers.
type Client struct {
	base       *url.URL
	http       *http.Client
	ttl        time.Duration
	unknownTTL time.Duration
	maxEntries int
	now        func() time.Time

	mu    sync.Mutex
	cache map[string]entry
}

type entry struct {
	answer  rewrite.RepositoryVisibility
	expires time.Time
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (for mutual TLS); the default has no timeout of its
// own, the caller's context bounds each lookup.
func WithHTTPClient(c *http.Client) Option { return func(cl *Client) { cl.http = c } }

// WithTTL sets how long a public or private answer is remembered (default 5 minutes).
func WithTTL(d time.Duration) Option { return func(c *Client) { c.ttl = d } }

// WithUnknownTTL sets how long an "unknown" answer or a failed request is remembered
// (default 10 s), so a cache that is down costs one timeout per interval, not one per Pod.
func WithUnknownTTL(d time.Duration) Option { return func(c *Client) { c.unknownTTL = d } }

// WithMaxEntries bounds the remembered answers (default 10,000).
func WithMaxEntries(n int) Option { return func(c *Client) { c.maxEntries = n } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// New returns a client of the proxy at baseURL (http or https, e.g.
// "https://hubcache.hubcache-system.svc:5000").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("proxy URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("proxy URL %q: want http(s)://host[:port]", baseURL)
	}
	c := &Client{
		base: u, http: &http.Client{}, ttl: 5 * time.Minute, unknownTTL: 10 * time.Second,
		maxEntries: 10000, now: time.Now, cache: map[string]entry{},
	}
	for _, o := range opts {
		o(c)
	}
	if c.ttl <= 0 || c.unknownTTL <= 0 || c.maxEntries < 1 {
		return nil, errors.New("visibility client: TTLs and the entry limit must be positive")
	}
	return c, nil
}

// Lookup returns the answers for repositories: remembered ones, and the others from one
// request (at most MaxRepositories; any beyond stay unanswered). A repository without an
// answer in the result is unknown to the caller; err says why the request failed, for logs.
func (c *Client) Lookup(ctx context.Context, repositories []string) (map[string]rewrite.RepositoryVisibility, error) {
	out := make(map[string]rewrite.RepositoryVisibility, len(repositories))
	var ask []string
	now := c.now()
	c.mu.Lock()
	for _, r := range repositories {
		if e, ok := c.cache[r]; ok && now.Before(e.expires) {
			out[r] = e.answer
		} else if len(ask) < MaxRepositories {
			ask = append(ask, r)
		}
	}
	c.mu.Unlock()
	if len(ask) == 0 {
		return out, nil
	}
	got, err := c.ask(ctx, ask)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range ask {
		a, ok := got[r]
		if !ok {
			a = rewrite.RepositoryVisibility{Visibility: rewrite.VisibilityUnknown}
		}
		if ok || ctx.Err() == nil {
			// A failure of the proxy is remembered briefly; our own deadline is not the proxy's fault.
			c.remember(r, a, now)
		}
		if ok {
			out[r] = a
		}
	}
	return out, err
}

// remember stores an answer, making room in a full cache: expired entries first, then any.
func (c *Client) remember(r string, a rewrite.RepositoryVisibility, now time.Time) {
	if _, ok := c.cache[r]; !ok && len(c.cache) >= c.maxEntries {
		for k, e := range c.cache {
			if !now.Before(e.expires) {
				delete(c.cache, k)
			}
		}
		for k := range c.cache {
			if len(c.cache) < c.maxEntries {
				break
			}
			delete(c.cache, k)
		}
	}
	ttl := c.ttl
	if a.Visibility != rewrite.VisibilityPublic && a.Visibility != rewrite.VisibilityPrivate {
		ttl = c.unknownTTL
	}
	c.cache[r] = entry{answer: a, expires: now.Add(ttl)}
}

type response struct {
	Repositories []struct {
		Repository string `json:"repository"`
		rewrite.RepositoryVisibility
	} `json:"repositories"`
}

// ask makes the one request.
func (c *Client) ask(ctx context.Context, repositories []string) (map[string]rewrite.RepositoryVisibility, error) {
	q := url.Values{"repository": repositories}
	u := c.base.JoinPath(Path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("visibility request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("visibility request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the visibility answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("visibility request: HTTP %d: %.200s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("visibility answer larger than %d bytes", maxResponseBytes)
	}
	var r response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding the visibility answer: %w", err)
	}
	asked := make(map[string]bool, len(repositories))
	for _, name := range repositories {
		asked[name] = true
	}
	out := make(map[string]rewrite.RepositoryVisibility, len(r.Repositories))
	for _, e := range r.Repositories {
		if asked[e.Repository] { // an answer to a question not asked is ignored
			out[e.Repository] = e.RepositoryVisibility
		}
	}
	return out, nil
}
