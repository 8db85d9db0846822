package server

import (
	"time"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/upstream"
)

// WithNegativeTTL sets how long an upstream "not found" is remembered (default
// cache.DefaultNegativeTTL; zero: not remembered).
func WithNegativeTTL(d time.Duration) Option {
	return func(o *options) { o.cacheOpts = append(o.cacheOpts, cache.WithNegativeTTL(d)) }
}

// WithMaxFills caps concurrent blob fills from upstream (default cache.DefaultMaxFills).
func WithMaxFills(n int) Option {
	return func(o *options) { o.cacheOpts = append(o.cacheOpts, cache.WithMaxFills(n)) }
}

// WithMaxUnknownBlobSize caps a blob upstream sends without Content-Length (default
// cache.DefaultMaxUnknownBlobSize).
func WithMaxUnknownBlobSize(n int64) Option {
	return func(o *options) { o.cacheOpts = append(o.cacheOpts, cache.WithMaxUnknownBlobSize(n)) }
}

// WithVerifyInterval sets how long a stored blob's whole read that hashed correctly vouches
// for later reads of the same unchanged object (default cache.DefaultVerifyInterval; zero:
// every whole read is hashed).
func WithVerifyInterval(d time.Duration) Option {
	return func(o *options) { o.cacheOpts = append(o.cacheOpts, cache.WithVerifyInterval(d)) }
}

// WithLoopbackRedirects lets upstream redirects reach loopback over plain http (tests only;
// by default a redirect must be https to a public address).
func WithLoopbackRedirects() Option {
	return func(o *options) { o.upstreamOpts = append(o.upstreamOpts, upstream.WithLoopbackRedirects()) }
}
