// Package server assembles the whole proxy — blob store, metadata store, upstream client,
// cache and the /v2/ handler — from a few options. The hubcache proxy command and the
// integration tests both build the proxy through it, so they run the same wiring.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/evict"
	"github.com/hubcache/hubcache/proxy/fillcoord"
	"github.com/hubcache/hubcache/proxy/imageref"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/oci"
	"github.com/hubcache/hubcache/proxy/registry"
	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/hubcache/hubcache/proxy/visibility"
)

// DefaultUpstreams is where registries are fetched from unless configured: Docker Hub only.
func DefaultUpstreams() map[string]*url.URL {
	return map[string]*url.URL{imageref.DockerHub: {Scheme: "https", Host: "registry-1.docker.io"}}
}

// Option configures a Server.
type Option func(*options)

type options struct {
	tagTTL          time.Duration
	fillTimeout     time.Duration
	maxManifestSize int64
	dockerConfigDir string
	upstreamTimeout time.Duration
	transport       http.RoundTripper
	logger          *slog.Logger
	registry        *prometheus.Registry
	now             func() time.Time
	blobs           blobstore.Store
	meta            metadata.Store
	blobURL         string
	metaURL         string
	pgPool          PostgresPool
	eviction        Eviction
	redirectTTL     time.Duration
	cleanupEvery    time.Duration
	healthEvery     time.Duration
	unreadyAfter    time.Duration
	unreadyAfterSet bool
	fills           *FillSharing
	visibilityTTL   time.Duration
	allowPrivate    []string
	cacheOpts       []cache.Option    // hardening.go
	upstreamOpts    []upstream.Option // hardening.go
}

// WithTagTTL sets how long tags are served without revalidation (default cache.DefaultTagTTL).
func WithTagTTL(d time.Duration) Option { return func(o *options) { o.tagTTL = d } }

// WithFillTimeout bounds one upstream blob fill (default cache.DefaultFillTimeout).
func WithFillTimeout(d time.Duration) Option { return func(o *options) { o.fillTimeout = d } }

// WithMaxManifestSize caps manifests accepted from upstream (default 4 MiB).
func WithMaxManifestSize(n int64) Option { return func(o *options) { o.maxManifestSize = n } }

// WithDockerConfigDir reads upstream credentials from DIR/config.json (default
// $DOCKER_CONFIG or ~/.docker; anonymous when absent).
func WithDockerConfigDir(dir string) Option { return func(o *options) { o.dockerConfigDir = dir } }

// WithUpstreamTimeout bounds upstream manifest requests and the wait for blob headers.
func WithUpstreamTimeout(d time.Duration) Option { return func(o *options) { o.upstreamTimeout = d } }

// WithUpstreamTransport sets the HTTP transport to upstream (tests: fault injection).
func WithUpstreamTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithLogger sets the logger for requests, cache events and storage (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMetricsRegistry registers every metric there and serves it on OpsHandler's /metrics
// (default: a new registry per Server).
func WithMetricsRegistry(r *prometheus.Registry) Option { return func(o *options) { o.registry = r } }

// WithClock replaces time.Now for tag freshness (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithBlobStore uses s instead of the file store under the data directory. The Server does
// not close it.
func WithBlobStore(s blobstore.Store) Option { return func(o *options) { o.blobs = s } }

// WithMetadataStore uses s instead of SQLite under the data directory. The Server does not
// close it.
func WithMetadataStore(s metadata.Store) Option { return func(o *options) { o.meta = s } }

// Server is a running proxy: its handlers and what must be closed.
type Server struct {
	api      http.Handler
	ops      http.Handler
	cache    *cache.Cache
	blobs    blobstore.Store
	meta     metadata.Store
	closers  []func() error
	registry *prometheus.Registry
	storeUp  *prometheus.GaugeVec
	ready    *readiness

	// stopTasks ends the background tasks (eviction, cleanup, health probes); tasks waits
	// for them.
	stopTasks context.CancelFunc
	tasks     sync.WaitGroup
}

// New builds the proxy. dataDir holds blobs/ (file store), metadata.db (SQLite) and spool/
// (blobs being filled); upstreams maps canonical registry names ("docker.io") to the base URL
// they are fetched from, and only those registries are served.
func New(ctx context.Context, dataDir string, upstreams map[string]*url.URL, opts ...Option) (*Server, error) {
	o := options{
		tagTTL:          cache.DefaultTagTTL,
		fillTimeout:     cache.DefaultFillTimeout,
		maxManifestSize: cache.DefaultMaxManifestSize,
		logger:          slog.Default(),
		now:             time.Now,
		cleanupEvery:    DefaultCleanupInterval,
		healthEvery:     DefaultHealthInterval,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
	}
	if len(upstreams) == 0 {
		return nil, errors.New("no upstream registry configured")
	}
	if dataDir == "" {
		return nil, errors.New("no data directory")
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if !o.unreadyAfterSet {
		o.unreadyAfter = DefaultUnreadyAfter
	}
	s := &Server{registry: o.registry, ready: newReadiness(o.unreadyAfter, o.now)}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()

	s.blobs = o.blobs
	if s.blobs == nil {
		bs, err := openBlobStore(ctx, o.blobURL, dataDir, o.logger)
		if err != nil {
			return nil, fmt.Errorf("blob store: %w", err)
		}
		s.blobs = bs
	}
	s.meta = o.meta
	if s.meta == nil {
		db, err := openMetadata(ctx, o.metaURL, dataDir, o.pgPool, o.logger)
		if err != nil {
			return nil, fmt.Errorf("metadata store: %w", err)
		}
		s.meta = db
		s.closers = append(s.closers, db.Close)
	}
	evictor, err := newEvictor(&o, s.blobs, s.meta)
	if err != nil {
		return nil, err
	}
	s.storeUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hubcache_store_up",
		Help: "Whether the store answered its last probe (1) or not (0), by store (blob_store, metadata). While one is down the proxy serves in a degraded mode (docs/operations.md).",
	}, []string{"store"})
	if err := o.registry.Register(s.storeUp); err != nil {
		return nil, err
	}

	canonical := map[string]*url.URL{}
	for name, u := range upstreams {
		canonical[imageref.CanonicalRegistry(name)] = u
	}
	names := make([]string, 0, len(canonical))
	for name := range canonical {
		names = append(names, name)
	}
	slices.Sort(names)

	upResponses := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hubcache_upstream_responses_total",
		Help: "HTTP responses from upstream registries for manifest and blob requests, by method, registry and status (0: no response).",
	}, []string{"method", "registry", "status"})
	if err := o.registry.Register(upResponses); err != nil {
		return nil, err
	}
	upOpts := []upstream.Option{
		upstream.WithDockerConfigDir(o.dockerConfigDir),
		upstream.WithMaxManifestSize(o.maxManifestSize),
		upstream.WithLogger(o.logger),
		upstream.WithObserver(func(method, registry string, status int) {
			upResponses.WithLabelValues(oci.MethodLabel(method), registry, strconv.Itoa(status)).Inc()
		}),
	}
	upOpts = append(upOpts, o.upstreamOpts...)
	if o.upstreamTimeout > 0 {
		upOpts = append(upOpts, upstream.WithTimeout(o.upstreamTimeout))
	}
	if o.transport != nil {
		upOpts = append(upOpts, upstream.WithTransport(o.transport))
	}
	up, err := upstream.New(canonical, upOpts...)
	if err != nil {
		return nil, fmt.Errorf("upstream client: %w", err)
	}
	// Credentials raise the rate limit; they never widen what is served (docs/private-images.md).
	vis, err := newVisibility(&o, canonical, s.meta, upOpts)
	if err != nil {
		return nil, err
	}

	pulls, err := newPullMetrics(o.registry, DefaultTopImages)
	if err != nil {
		return nil, fmt.Errorf("pull metrics: %w", err)
	}
	// Every manifest GET upstream answers is a pull Docker Hub counted (pulls avoided); the
	// counting sits inside fill coordination, which passes manifest GETs through.
	var cacheUp cache.Upstream = countingUpstream{Upstream: up, pulls: pulls}
	fc, err := newFillCoordinator(ctx, &o)
	if err != nil {
		return nil, err
	}
	if fc != nil {
		s.closers = append(s.closers, func() error { fc.Close(); return nil })
		peerOpts, err := o.fills.peerOptions()
		if err != nil {
			return nil, err // the closers above end fc
		}
		cacheUp = fillcoord.NewUpstream(cacheUp, fc, o.fills.Secret, s.blobs, peerOpts...)
	}
	c, err := cache.New(s.blobs, s.meta, cacheUp, append([]cache.Option{
		cache.WithTagTTL(o.tagTTL),
		cache.WithFillTimeout(o.fillTimeout),
		cache.WithMaxManifestSize(o.maxManifestSize),
		cache.WithSpoolDir(filepath.Join(dataDir, "spool")),
		cache.WithClock(o.now),
		cache.WithLogger(o.logger),
		cache.WithRegisterer(o.registry),
		cache.WithRegistries(names...),
	}, o.cacheOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	s.cache = c
	// The cache goes first on Close: its fills write to the stores.
	s.closers = append([]func() error{c.Close}, s.closers...)

	api, err := registry.New(visibility.Guard(c, vis), registry.WithLogger(o.logger), registry.WithRegisterer(o.registry))
	if err != nil {
		return nil, fmt.Errorf("registry handler: %w", err)
	}
	s.api = pulls.wrap(api)
	if o.redirectTTL > 0 {
		if _, can := s.blobs.(cache.Presigner); can {
			s.api = redirectBlobs(c, s.api, o.redirectTTL, vis.Authorize)
		} else {
			o.logger.Warn("the blob store cannot presign; blob GETs are served through the proxy")
		}
	}
	s.api = withVisibilityEndpoint(s.api, vis, o.logger)
	if fc != nil {
		s.api = withFillEndpoint(s.api, c, o.fills.Secret, o.logger)
	}
	s.ops = newOpsHandler(o.registry, s.checks, s.ready)
	s.startTasks(&o, evictor)
	ok = true
	return s, nil
}

// Handler serves the registry API (/v2/…).
func (s *Server) Handler() http.Handler { return s.api }

// OpsHandler serves /metrics, /healthz (the process runs) and /readyz (the stores answer).
func (s *Server) OpsHandler() http.Handler { return s.ops }

// Registry is where the Server's metrics are registered.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// startTasks runs eviction, abandoned-upload cleanup and store probes until Close.
func (s *Server) startTasks(o *options, evictor *evict.Evictor) {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopTasks = cancel
	// Tasks stop before the cache and the stores close.
	s.closers = append([]func() error{func() error { cancel(); s.tasks.Wait(); return nil }}, s.closers...)
	if evictor != nil {
		s.tasks.Go(func() { evictor.Run(ctx) })
	}
	if cl, ok := s.blobs.(cleaner); ok && o.cleanupEvery > 0 {
		// An upload older than the longest fill belongs to a replica that died mid-fill.
		olderThan := o.fillTimeout + 5*time.Minute
		s.tasks.Go(func() { runCleanup(ctx, cl, o.cleanupEvery, olderThan, o.logger) })
	}
	if o.healthEvery > 0 {
		s.tasks.Go(func() {
			t := time.NewTicker(o.healthEvery)
			defer t.Stop()
			for {
				pctx, pcancel := context.WithTimeout(ctx, readyTimeout)
				s.checks(pctx)
				pcancel()
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
}

// Ready checks that the blob store and the metadata store answer.
func (s *Server) Ready(ctx context.Context) error {
	var errs []error
	for _, c := range s.checks(ctx) {
		if c.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, c.err))
		}
	}
	return errors.Join(errs...)
}

type check struct {
	name string
	err  error
}

// checks probes each store once.
func (s *Server) checks(ctx context.Context) []check {
	// A digest nobody stores: the blob store must answer "not found", and quickly.
	var blobErr error
	if _, err := s.blobs.Stat(ctx, v1.Hash{Algorithm: "sha256", Hex: probeHex}); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		blobErr = err
	}
	cs := []check{
		{name: "blob_store", err: blobErr},
		{name: "metadata", err: s.meta.Ping(ctx)},
	}
	for _, c := range cs {
		up := 1.0
		if c.err != nil {
			up = 0
		}
		s.storeUp.WithLabelValues(c.name).Set(up)
	}
	s.ready.observe(cs)
	return cs
}

// Close stops fills in progress and closes the stores the Server opened.
func (s *Server) Close() error {
	var errs []error
	for _, c := range s.closers {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	s.closers = nil
	return errors.Join(errs...)
}
