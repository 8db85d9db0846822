package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/hubcache/hubcache/proxy/visibility"
)

// WithVisibilityTTL sets how long a repository's visibility answer is trusted before upstream
// is asked again (default visibility.DefaultTTL).
func WithVisibilityTTL(d time.Duration) Option { return func(o *options) { o.visibilityTTL = d } }

// WithAllowPrivate serves repositories matching these glob patterns on "registry/repository"
// (e.g. "docker.io/acme/*") even when anonymous upstream refuses them: anyone who can reach
// the proxy can then pull them with the proxy's credentials (docs/private-images.md).
func WithAllowPrivate(patterns ...string) Option {
	return func(o *options) { o.allowPrivate = append(o.allowPrivate, patterns...) }
}

// newVisibility builds the checker: its own upstream client with no credentials at all, so
// that the answer is what an anonymous client gets.
func newVisibility(o *options, upstreams map[string]*url.URL, meta metadata.Store, upOpts []upstream.Option) (*visibility.Checker, error) {
	anon, err := upstream.New(upstreams, append(upOpts, upstream.WithKeychain(authn.NewMultiKeychain()))...)
	if err != nil {
		return nil, fmt.Errorf("anonymous upstream client: %w", err)
	}
	c, err := visibility.New(meta, anon,
		visibility.WithTTL(o.visibilityTTL),
		visibility.WithAllow(o.allowPrivate...),
		visibility.WithClock(o.now),
		visibility.WithLogger(o.logger),
		visibility.WithRegisterer(o.registry),
	)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// withVisibilityEndpoint serves visibility.Path next to the registry API. The path is matched
// exactly, not through a ServeMux, which would clean and redirect paths the registry handler
// must see as sent (and refuse).
func withVisibilityEndpoint(api http.Handler, c *visibility.Checker, log *slog.Logger) http.Handler {
	vh := visibility.Handler(c, log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == visibility.Path {
			vh.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
