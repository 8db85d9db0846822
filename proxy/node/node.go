// Package node is hubcache's node-local entry point. It runs on every node bound to
// 127.0.0.1, where the kubelet may pull over plain HTTP with no node configuration, and
// forwards every registry request to the hubcache proxy Service. When the proxy cannot be
// reached it fetches from the upstream registry itself (degraded, nothing cached), because
// once an image reference has been rewritten the kubelet has no other way to docker.io.
//
// Bodies stream through a fixed 32 KiB buffer per request and are flushed as they arrive.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/hubcache/hubcache/proxy/oci"
	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/egress"
	"github.com/hubcache/hubcache/proxy/limits"
)

// Server is the node-local registry endpoint.
type Server struct {
	proxyURL   *url.URL
	upstreams  map[string]upstream.Endpoint
	proxy      http.RoundTripper
	breaker    *breaker
	transports *transports
	metrics    *metrics
	log        *slog.Logger
	buffers    *sync.Pool
	listening  atomic.Bool
	limits     limits.Config
	guard      *egress.Guard
}

type options struct {
	logger             *slog.Logger
	keychain           authn.Keychain
	registerer         prometheus.Registerer
	proxyTransport     http.RoundTripper
	upstreamTransport  http.RoundTripper
	proxyHeaderTimeout time.Duration
	failureThreshold   int
	coolDown           time.Duration
	now                func() time.Time
	limits             limits.Config
	egressOpts         []egress.Option
	proxyTLS           *tls.Config
}

// Option configures a Server.
type Option func(*options)

// WithLoopbackRedirects lets fallback redirects reach loopback over plain http (tests only;
// by default a redirect must be https to a public address, see proxy/egress).
func WithLoopbackRedirects() Option {
	return func(o *options) { o.egressOpts = append(o.egressOpts, egress.AllowLoopback()) }
}

// WithProxyTLS sets the TLS client configuration for an https proxy URL: the CA that signed
// the proxy's certificate and the node's client certificate (mutual TLS).
func WithProxyTLS(c *tls.Config) Option { return func(o *options) { o.proxyTLS = c } }

// WithLimits sets the connection, in-flight and write progress limits of Serve (default:
// limits.Defaults()).
func WithLimits(c limits.Config) Option { return func(o *options) { o.limits = c } }

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithKeychain sets where upstream credentials come from (default: anonymous), e.g.
// upstream.DockerConfigKeychain.
func WithKeychain(kc authn.Keychain) Option { return func(o *options) { o.keychain = kc } }

// WithRegisterer registers the metrics there (default: a private registry).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithProxyTransport sets the transport to the proxy (default: see defaultProxyTransport).
func WithProxyTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.proxyTransport = rt }
}

// WithUpstreamTransport sets the base transport to upstream registries, below the token
// handshake (default: see defaultUpstreamTransport).
func WithUpstreamTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.upstreamTransport = rt }
}

// WithProxyHeaderTimeout bounds the wait for the proxy's response headers before falling
// back (default 10 s; containerd itself gives up after 30 s).
func WithProxyHeaderTimeout(d time.Duration) Option {
	return func(o *options) { o.proxyHeaderTimeout = d }
}

// WithBreaker sets how many consecutive connection failures switch the node to fallback
// (default 3) and how long it waits before trying the proxy again (default 10 s).
func WithBreaker(threshold int, coolDown time.Duration) Option {
	return func(o *options) { o.failureThreshold, o.coolDown = threshold, coolDown }
}

// WithClock sets the time source (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// New returns a Server that forwards to the proxy at proxyURL and falls back to upstreams.
func New(proxyURL *url.URL, upstreams []upstream.Endpoint, opts ...Option) (*Server, error) {
	if proxyURL == nil || (proxyURL.Scheme != "http" && proxyURL.Scheme != "https") || proxyURL.Host == "" {
		return nil, fmt.Errorf("proxy URL %v: want http(s)://host[:port]", proxyURL)
	}
	if len(upstreams) == 0 {
		return nil, errors.New("no upstream registry configured")
	}
	o := options{
		logger:             slog.Default(),
		keychain:           authn.NewMultiKeychain(), // resolves to anonymous
		proxyHeaderTimeout: 10 * time.Second,
		failureThreshold:   3,
		coolDown:           10 * time.Second,
		now:                time.Now,
		limits:             limits.Defaults(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.registerer == nil {
		o.registerer = prometheus.NewRegistry()
	}
	if o.proxyTransport == nil {
		t := defaultProxyTransport(o.proxyHeaderTimeout)
		t.TLSClientConfig = o.proxyTLS
		o.proxyTransport = t
	}
	urls := make([]*url.URL, 0, len(upstreams))
	for _, u := range upstreams {
		urls = append(urls, u.URL)
	}
	guard := egress.New(urls, o.egressOpts...)
	if o.upstreamTransport == nil {
		o.upstreamTransport = defaultUpstreamTransport(guard)
	}
	ups := map[string]upstream.Endpoint{}
	for _, u := range upstreams {
		if _, dup := ups[u.Registry]; dup {
			return nil, fmt.Errorf("upstream %s configured twice", u.Registry)
		}
		ups[u.Registry] = u
	}
	base := *proxyURL
	base.Path, base.RawPath, base.RawQuery, base.Fragment = "", "", "", ""
	return &Server{
		proxyURL:   &base,
		upstreams:  ups,
		proxy:      o.proxyTransport,
		breaker:    newBreaker(o.failureThreshold, o.coolDown, o.now),
		transports: newTransports(o.upstreamTransport, o.keychain, 128, 30*time.Minute, o.now),
		metrics:    newMetrics(o.registerer),
		log:        o.logger,
		buffers:    newBufferPool(),
		limits:     o.limits,
		guard:      guard,
	}, nil
}

// defaultProxyTransport talks to the in-cluster Service: no HTTP(S)_PROXY (cluster names
// are rarely in NO_PROXY), short connect timeout, and a bound on the wait for headers so a
// stuck proxy turns into a fallback well before containerd's 30 s.
func defaultProxyTransport(headerTimeout time.Duration) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: headerTimeout,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		// Bytes must pass through verbatim: no transparent gzip.
		DisableCompression: true,
	}
}

// defaultUpstreamTransport talks to public registries, through the node's HTTP(S)_PROXY if
// it has one.
// Every dial goes through the egress guard: redirects and token realms may only lead to
// public addresses.
func defaultUpstreamTransport(guard *egress.Guard) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           guard.DialContext((&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext),
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true,
	}
}

// Serve answers registry requests on l (wrapped with TLSGuard) until ctx ends, then shuts
// down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:        s,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.limits.Apply(srv)
	s.listening.Store(true)
	defer s.listening.Store(false)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(TLSGuard(s.limits.Listener(l))) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving registry requests: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// ServeHTTP validates the request, then forwards it to the proxy or falls back.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := oci.IncomingRequestID(r)
	r = r.WithContext(oci.WithRequestID(r.Context(), id))
	w.Header().Set(oci.RequestIDHeader, id)
	log := s.log.With("request_id", id, "method", r.Method, "path", r.URL.Path)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.reject(w, r, log, oci.NewError(http.StatusMethodNotAllowed, oci.CodeUnsupported, "this registry is read-only"))
		return
	}
	rt, err := parseRoute(r.URL)
	if err != nil {
		s.reject(w, r, log, err)
		return
	}
	if rt.kind == kindPing {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte("{}"))
		}
		return
	}
	if _, ok := s.upstreams[rt.registry]; !ok {
		s.reject(w, r, log, oci.NewError(http.StatusNotFound, oci.CodeNameUnknown, "registry is not a configured upstream"))
		return
	}
	log = log.With("registry", rt.registry, "repository", rt.repository)

	outcome := outcomeForwarded
	n, served, err := s.forward(w, r, log)
	if !served && err == nil {
		outcome = outcomeFallback
		n, err = s.fallback(w, r, rt)
	}
	s.metrics.bytes.WithLabelValues(outcome).Add(float64(n))
	switch {
	case errors.Is(err, errAborted):
		s.metrics.requests.WithLabelValues(outcomeError).Inc()
		log.Warn("response aborted", "route", outcome, "bytes", n, "error", err, "duration", time.Since(start))
		// Headers are out: only breaking the connection tells the client the body is short.
		panic(http.ErrAbortHandler)
	case err != nil:
		s.metrics.requests.WithLabelValues(outcomeError).Inc()
		log.Warn("request failed", "route", outcome, "error", err, "duration", time.Since(start))
	default:
		s.metrics.requests.WithLabelValues(outcome).Inc()
		level := slog.LevelDebug
		if outcome == outcomeFallback {
			level = slog.LevelInfo
		}
		log.Log(r.Context(), level, "served", "route", outcome, "bytes", n, "duration", time.Since(start))
	}
}

func (s *Server) reject(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	s.metrics.requests.WithLabelValues(outcomeRejected).Inc()
	var re *oci.Error
	if !errors.As(err, &re) {
		re = &oci.Error{Status: http.StatusBadRequest, Code: oci.CodeNameInvalid, Message: "invalid request", Cause: err}
	}
	oci.WriteError(w, r, log, re)
}
