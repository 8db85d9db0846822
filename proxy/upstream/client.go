// Package upstream is the client for the registries hubcache pulls from (Docker Hub and any
// other allowed registry). It speaks the distribution API over raw HTTP requests, with
// go-containerregistry's transport doing the ping and Bearer-token flow, so that it keeps the
// exact bytes and the response headers (ratelimit-*, Docker-Content-Digest). Only configured
// registries are ever contacted.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/hubcache/hubcache/proxy/egress"
	"github.com/hubcache/hubcache/proxy/imageref"
)

// Client fetches manifests and blobs from the configured registries. It is safe for
// concurrent use.
type Client struct {
	guard      *egress.Guard
	opts       options
	registries map[string]*upstreamRegistry
	transports *TransportCache

	mu         sync.Mutex
	rateLimits map[string]rateLimit
}

type upstreamRegistry struct {
	name string // as configured, e.g. "docker.io"
	url  *url.URL
	reg  name.Registry // the host requests go to
	base http.RoundTripper
}

type rateLimit struct {
	limit, remaining       int
	haveLimit, haveRemains bool
}

// New returns a client for registries, which maps registry names as they appear in image
// references ("docker.io") to where they are fetched from ("https://registry-1.docker.io").
// Plain HTTP is used only when a URL says http.
func New(registries map[string]*url.URL, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.keychain == nil {
		o.keychain = DockerConfigKeychain(o.dockerConfigDir)
	}
	guard := newGuard(registries, o.egressOpts)
	if o.base == nil {
		o.base = guard.Transport()
	}
	c := &Client{
		guard:      guard,
		opts:       o,
		registries: map[string]*upstreamRegistry{},
		transports: NewTransportCache(o.cacheSize, 0, nil),
		rateLimits: map[string]rateLimit{},
	}
	for regName, u := range registries {
		r, err := newUpstreamRegistry(regName, u, o.base)
		if err != nil {
			return nil, err
		}
		c.registries[regName] = r
	}
	return c, nil
}

func newUpstreamRegistry(regName string, u *url.URL, base http.RoundTripper) (*upstreamRegistry, error) {
	if _, err := name.NewRegistry(regName); err != nil {
		return nil, fmt.Errorf("upstream %s: invalid registry name: %w", regName, err)
	}
	clean, err := checkURL(u)
	if err != nil {
		return nil, fmt.Errorf("upstream %s=%v: %w", regName, u, err)
	}
	u = clean
	var nameOpts []name.Option
	if u.Scheme == "http" {
		nameOpts = append(nameOpts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s=%s: invalid host: %w", regName, u, err)
	}
	return &upstreamRegistry{
		name: regName,
		url:  &url.URL{Scheme: u.Scheme, Host: u.Host},
		reg:  reg,
		base: schemeGuard{inner: base, host: u.Host, scheme: u.Scheme},
	}, nil
}

// schemeGuard refuses requests to the registry's host in any scheme but the configured one.
// go-containerregistry tries plain HTTP as well for loopback and private addresses; an
// https upstream must never be downgraded.
type schemeGuard struct {
	inner        http.RoundTripper
	host, scheme string
}

func (g schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == g.host && r.URL.Scheme != g.scheme {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, fmt.Errorf("refusing %s to %s: configured as %s", r.URL.Scheme, g.host, g.scheme)
	}
	return g.inner.RoundTrip(r)
}

// RateLimit returns the last ratelimit-limit and ratelimit-remaining seen from registry;
// ok is false until both were seen.
func (c *Client) RateLimit(registry string) (limit, remaining int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rl := c.rateLimits[registry]
	return rl.limit, rl.remaining, rl.haveLimit && rl.haveRemains
}

func (c *Client) recordRateLimit(registry string, h http.Header) {
	limit, okL := parseRateLimit(h.Get("ratelimit-limit"))
	remaining, okR := parseRateLimit(h.Get("ratelimit-remaining"))
	if !okL && !okR {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rl := c.rateLimits[registry]
	if okL {
		rl.limit, rl.haveLimit = limit, true
	}
	if okR {
		rl.remaining, rl.haveRemains = remaining, true
	}
	c.rateLimits[registry] = rl
}

// parseRateLimit reads "100;w=21600" (Docker Hub's form) or a bare "100".
func parseRateLimit(v string) (int, bool) {
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func (c *Client) registry(regName string) (*upstreamRegistry, error) {
	r, ok := c.registries[regName]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownRegistry, regName)
	}
	return r, nil
}

// repository validates repo as a repository path on r, exactly as given (no library/
// added: that is the caller's job).
func repository(r *upstreamRegistry, repo string) (name.Repository, error) {
	if !validRepository(repo) {
		return name.Repository{}, fmt.Errorf("%w: invalid repository name %q", ErrNotFound, repo)
	}
	rr, err := name.NewRepository(r.url.Host + "/" + repo)
	if err != nil || rr.RepositoryStr() != repo {
		return name.Repository{}, fmt.Errorf("%w: invalid repository name %q", ErrNotFound, repo)
	}
	return rr, nil
}

// validRepository applies the reference grammar (imageref.ValidRepository): no "..", which
// means something else in a URL path, and at most 255 characters.
func validRepository(repo string) bool { return imageref.ValidRepository(repo) }

// transport returns the authenticated transport for one repository on r, building it
// (ping, credentials, token) when it is not cached.
func (c *Client) transport(ctx context.Context, r *upstreamRegistry, repo name.Repository) (http.RoundTripper, error) {
	key := r.name + "\x00" + repo.RepositoryStr()
	if rt, ok := c.transports.Get(key); ok {
		return rt, nil
	}
	auth, err := c.authenticator(r, repo)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.timeout)
	defer cancel()
	base := transport.NewUserAgent(r.base, c.opts.userAgent)
	rt, err := transport.NewWithContext(ctx, r.reg, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticating to %s for %s: %w", r.name, repo.RepositoryStr(), classify(err))
	}
	c.opts.logger.Debug("upstream transport ready", "registry", r.name, "repository", repo.RepositoryStr(), "anonymous", auth == authn.Anonymous)
	return c.transports.Add(key, rt), nil
}

// authenticator finds r's credentials for repo (see Authenticate).
func (c *Client) authenticator(r *upstreamRegistry, repo name.Repository) (authn.Authenticator, error) {
	return Authenticate(c.opts.keychain, r.name, repo)
}

// Authenticate finds credentials for repo on the registry named registry ("docker.io"),
// whose API lives at repo's host: under the registry name first (Docker Hub's live under
// docker.io's keys), then under the API host. Nothing found means anonymous.
func Authenticate(kc authn.Keychain, registry string, repo name.Repository) (authn.Authenticator, error) {
	targets := []authn.Resource{}
	if logical, err := name.NewRepository(registry + "/" + repo.RepositoryStr()); err == nil {
		targets = append(targets, logical)
	}
	targets = append(targets, repo)
	for _, t := range targets {
		auth, err := kc.Resolve(t)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", registry, err)
		}
		if auth != authn.Anonymous {
			return auth, nil
		}
	}
	return authn.Anonymous, nil
}

// send makes one request to r for repo; a non-nil response has status 2xx, anything else
// is turned into an error. The caller closes the body.
func (c *Client) send(ctx context.Context, r *upstreamRegistry, repo name.Repository, method, path string, accept []string) (*http.Response, error) {
	rt, err := c.transport(ctx, r, repo)
	if err != nil {
		return nil, err
	}
	u := *r.url
	u.Path = "/v2/" + repo.RepositoryStr() + path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	resp, err := (&http.Client{Transport: rt, CheckRedirect: c.guard.CheckRedirect}).Do(req)
	if err != nil {
		c.opts.observer(method, r.name, 0)
		err = classify(err)
		if errors.Is(err, ErrUnauthorized) {
			// The token refresh was refused: start from scratch next time.
			c.transports.Remove(r.name + "\x00" + repo.RepositoryStr())
		}
		return nil, fmt.Errorf("%s %s: %w", method, u.Path, err)
	}
	c.opts.observer(method, r.name, resp.StatusCode)
	c.recordRateLimit(r.name, resp.Header)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	err = statusError(resp)
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		// Build the transport again next time: credentials may have changed.
		c.transports.Remove(r.name + "\x00" + repo.RepositoryStr())
	}
	return nil, fmt.Errorf("%s %s: %w", method, u.Path, err)
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// withHeaderTimeout runs send with a context that is cancelled if no response headers
// arrive within the timeout, and is released when the returned body is closed.
func (c *Client) withHeaderTimeout(ctx context.Context, send func(context.Context) (*http.Response, error)) (*http.Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(c.opts.timeout, cancel)
	resp, err := send(ctx)
	timer.Stop()
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}
