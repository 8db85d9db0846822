package upstream

import (
	"net/url"

	"github.com/hubcache/hubcache/proxy/egress"
)

// WithLoopbackRedirects lets upstream redirects reach loopback addresses over plain http.
// Only for tests, whose fake registries listen on 127.0.0.1: by default a redirect must be
// https to a public address (see proxy/egress).
func WithLoopbackRedirects() Option {
	return func(o *options) { o.egressOpts = append(o.egressOpts, egress.AllowLoopback()) }
}

// newGuard trusts the configured registries as written; everything they send us to is
// checked.
func newGuard(registries map[string]*url.URL, opts []egress.Option) *egress.Guard {
	urls := make([]*url.URL, 0, len(registries))
	for _, u := range registries {
		urls = append(urls, u)
	}
	return egress.New(urls, opts...)
}
