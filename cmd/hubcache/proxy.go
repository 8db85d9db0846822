package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/evict"
	"github.com/hubcache/hubcache/proxy/limits"
	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/proxy/tlsfiles"
	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/hubcache/hubcache/proxy/visibility"
)

// proxyFlags are the proxy command's settings, each also a HUBCACHE_… variable.
type proxyFlags struct {
	listen          string
	metricsListen   string
	dataDir         string
	upstreams       []string
	dockerConfig    string
	tagTTL          time.Duration
	fillTimeout     time.Duration
	upstreamTimeout time.Duration
	maxManifestSize int64
	logLevel        string
	shutdownTimeout time.Duration

	blobStore     string
	metadata      string
	pgMaxConns    int32
	pgMinConns    int32
	pgMaxLifetime time.Duration
	pgMaxIdle     time.Duration
	pgHealth      time.Duration
	pgConnect     time.Duration
	s3Redirect    bool
	s3RedirectTTL time.Duration
	maxSize       string
	retention     time.Duration
	evictInterval time.Duration
	cleanupEvery  time.Duration

	visibilityTTL time.Duration
	allowPrivate  []string

	ops            opsFlags
	fills          fillFlags
	limits         limits.Config
	negativeTTL    time.Duration
	maxFills       int
	maxUnknownBlob int64
	verifyInterval time.Duration
	tlsCert        string
	tlsKey         string
	clientCA       string
}

func newProxyCmd() *cobra.Command {
	f := proxyFlags{}
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the pull-through cache (OCI registry API on --listen)",
		Long: `Run the pull-through cache. Pull 127.0.0.1:5000/docker.io/<repository>:<tag>; the
registry API serves /v2/<registry>/<repository>/manifests/<ref> and …/blobs/<digest>, and the
mirror form /v2/<repository>/… (?ns=docker.io or no ns means docker.io).
By default blobs are kept as files and metadata in SQLite under --data-dir; production uses
--blob-store s3://… and --metadata postgres://… (see docs/operations.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runProxy(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:5000", "address of the registry API")
	fl.StringVar(&f.metricsListen, "metrics-listen", "127.0.0.1:9090", "address of /metrics, /healthz and /readyz (empty: off)")
	fl.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "directory for blobs (blobs/), metadata (metadata.db) and fills in progress (spool/)")
	fl.StringArrayVar(&f.upstreams, "upstream", []string{"docker.io=https://registry-1.docker.io"},
		"REGISTRY=URL: serve REGISTRY, fetching from URL (repeatable; only these registries are reachable; plain http only when written so)")
	fl.StringVar(&f.dockerConfig, "docker-config", "", "directory of the Docker config.json with upstream credentials (default $DOCKER_CONFIG or ~/.docker; anonymous when absent)")
	fl.DurationVar(&f.tagTTL, "tag-ttl", cache.DefaultTagTTL, "how long a tag is served before it is revalidated upstream with a HEAD")
	fl.DurationVar(&f.fillTimeout, "fill-timeout", cache.DefaultFillTimeout, "upper bound of one blob download from upstream, whether or not clients still wait")
	fl.DurationVar(&f.upstreamTimeout, "upstream-timeout", upstream.DefaultTimeout, "bound on upstream manifest requests, HEADs and the wait for blob response headers")
	fl.Int64Var(&f.maxManifestSize, "max-manifest-size", cache.DefaultMaxManifestSize, "largest manifest accepted from upstream, in bytes")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long to let requests in progress finish on SIGINT/SIGTERM")
	fl.StringVar(&f.blobStore, "blob-store", "", "where blobs are kept: file://DIR or s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path-style=true, credentials from the AWS chain (default: files under --data-dir)")
	fl.StringVar(&f.metadata, "metadata", "", "metadata store: sqlite://PATH or postgres://USER[:PASSWORD]@HOST:PORT/DB?OPTIONS (default: SQLite under --data-dir)")
	fl.Int32Var(&f.pgMaxConns, "pg-max-conns", 0, "largest number of Postgres connections (0: pgx default, max(4, CPUs))")
	fl.Int32Var(&f.pgMinConns, "pg-min-conns", 0, "Postgres connections kept open when idle")
	fl.DurationVar(&f.pgMaxLifetime, "pg-max-conn-lifetime", 0, "close Postgres connections older than this (0: pgx default, 1h)")
	fl.DurationVar(&f.pgMaxIdle, "pg-max-conn-idle", 0, "close Postgres connections idle for longer than this (0: pgx default, 30m)")
	fl.DurationVar(&f.pgHealth, "pg-health-check", 0, "how often idle Postgres connections are checked (0: pgx default, 1m)")
	fl.DurationVar(&f.pgConnect, "pg-connect-timeout", 5*time.Second, "bound on opening one Postgres connection")
	fl.BoolVar(&f.s3Redirect, "s3-redirect", false, "answer GETs of cached blobs with a 307 to a presigned S3 URL (clients must reach S3 directly)")
	fl.DurationVar(&f.s3RedirectTTL, "s3-redirect-ttl", 15*time.Minute, "validity of the presigned URLs of --s3-redirect")
	fl.StringVar(&f.maxSize, "max-size", "", "cache size budget, e.g. 500GiB; least recently used blobs are evicted above it (empty: no eviction)")
	fl.DurationVar(&f.retention, "retention", evict.DefaultRetention, "a manifest pulled within this is never evicted, nor anything it references")
	fl.DurationVar(&f.evictInterval, "evict-interval", evict.DefaultInterval, "time between eviction passes")
	fl.DurationVar(&f.cleanupEvery, "cleanup-interval", server.DefaultCleanupInterval, "how often abandoned S3 multipart uploads are aborted")
	fl.DurationVar(&f.visibilityTTL, "visibility-ttl", visibility.DefaultTTL, "how long a repository's public/private answer (an anonymous upstream HEAD) is trusted before it is checked again")
	fl.StringArrayVar(&f.allowPrivate, "allow-private", nil, "glob patterns on REGISTRY/REPOSITORY (e.g. docker.io/acme/*) served even when not public upstream, with the proxy's credentials, to anyone who reaches the proxy (repeatable or comma-separated; see docs/private-images.md)")
	addFillFlags(fl, &f.fills)
	addOpsFlags(fl, &f.ops)
	addLimitFlags(fl, &f.limits, limits.Defaults())
	fl.StringVar(&f.tlsCert, "tls-cert-file", "", "serve the registry API over TLS with this certificate (reloaded when it changes; empty: plain HTTP)")
	fl.StringVar(&f.tlsKey, "tls-key-file", "", "key of --tls-cert-file")
	fl.StringVar(&f.clientCA, "client-ca-file", "", "require client certificates signed by this CA bundle (mutual TLS; needs --tls-cert-file)")
	fl.DurationVar(&f.negativeTTL, "negative-ttl", cache.DefaultNegativeTTL, "how long an upstream \"not found\" is remembered, so a missing tag costs one upstream request per period (0: not remembered)")
	fl.IntVar(&f.maxFills, "max-fills", cache.DefaultMaxFills, "most blob downloads from upstream at once; a miss over it is answered 503 with Retry-After (0: no cap)")
	fl.DurationVar(&f.verifyInterval, "verify-interval", cache.DefaultVerifyInterval, "how long a cached blob that hashed to its digest on a whole read is sent unhashed while its file or S3 object is unchanged (0: hash every whole read; see docs/security.md)")
	fl.Int64Var(&f.maxUnknownBlob, "max-unknown-blob-size", cache.DefaultMaxUnknownBlobSize, "largest blob accepted from upstream without a Content-Length, in bytes")
	return cmd
}

// defaultDataDir is ./hubcache-data: `make run` works from a checkout with nothing set up,
// and the data stays next to the tree (and out of git, see .gitignore). Containers set
// --data-dir to a volume.
func defaultDataDir() string { return "hubcache-data" }

// parseUpstreams reads the --upstream REGISTRY=URL pairs (upstream.ParseEndpoints) as the
// map upstream.New takes.
func parseUpstreams(values []string) (map[string]*url.URL, error) {
	eps, err := upstream.ParseEndpoints(values)
	if err != nil {
		return nil, fmt.Errorf("--upstream: %w", err)
	}
	out := make(map[string]*url.URL, len(eps))
	for _, e := range eps {
		out[e.Registry] = e.URL
	}
	return out, nil
}

// allowPatterns splits --allow-private values on commas (how HUBCACHE_ALLOW_PRIVATE lists
// more than one) and drops blanks.
func allowPatterns(values []string) []string {
	var out []string
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

func runProxy(ctx context.Context, f proxyFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	ups, err := parseUpstreams(f.upstreams)
	if err != nil {
		return err
	}
	if err := visibility.ValidatePatterns(allowPatterns(f.allowPrivate)); err != nil {
		return fmt.Errorf("--allow-private: %w", err)
	}
	if f.visibilityTTL <= 0 {
		return errors.New("--visibility-ttl must be positive")
	}
	if err := f.limits.Validate(); err != nil {
		return err
	}
	if f.negativeTTL < 0 || f.maxFills < 0 || f.verifyInterval < 0 || f.maxUnknownBlob <= 0 {
		return errors.New("--negative-ttl, --max-fills and --verify-interval must not be negative, --max-unknown-blob-size must be positive")
	}
	if f.maxManifestSize <= 0 {
		return errors.New("--max-manifest-size must be positive")
	}
	dataDir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	var serverTLS *tls.Config
	var tlsFiles *tlsfiles.Files
	if f.tlsCert != "" || f.tlsKey != "" || f.clientCA != "" {
		if f.tlsCert == "" {
			return errors.New("--client-ca-file and --tls-key-file need --tls-cert-file")
		}
		files, err := tlsfiles.Load(f.tlsCert, f.tlsKey, f.clientCA)
		if err != nil {
			return fmt.Errorf("--tls-cert-file: %w", err)
		}
		serverTLS, tlsFiles = files.ServerConfig(), files
	}
	storage, err := storageOptions(f)
	if err != nil {
		return err
	}
	fills, err := fillOption(f.fills, f.listen, tlsFiles)
	if err != nil {
		return err
	}
	storage = append(storage, fills)
	opsOpts, err := f.ops.options()
	if err != nil {
		return err
	}
	storage = append(storage, opsOpts...)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg, err := newMetricsRegistry("proxy")
	if err != nil {
		return err
	}
	opts := append([]server.Option{},
		server.WithMetricsRegistry(reg),
		server.WithTagTTL(f.tagTTL),
		server.WithFillTimeout(f.fillTimeout),
		server.WithUpstreamTimeout(f.upstreamTimeout),
		server.WithMaxManifestSize(f.maxManifestSize),
		server.WithDockerConfigDir(f.dockerConfig),
		server.WithLogger(log),
		server.WithVisibilityTTL(f.visibilityTTL),
		server.WithAllowPrivate(allowPatterns(f.allowPrivate)...),
		server.WithNegativeTTL(f.negativeTTL),
		server.WithMaxFills(f.maxFills),
		server.WithMaxUnknownBlobSize(f.maxUnknownBlob),
		server.WithVerifyInterval(f.verifyInterval),
	)
	srv, err := server.New(ctx, dataDir, ups, append(opts, storage...)...)
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.Close(); err != nil {
			log.Error("closing stores", "error", err.Error())
		}
	}()

	// No WriteTimeout: a large layer may stream for a long time. The limits cut readers that
	// stop reading instead (write progress deadline), and cap connections and requests.
	api := &http.Server{Handler: srv.Handler(), ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	f.limits.Apply(api)
	apiLn, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", f.listen, err)
	}
	apiLn = f.limits.Listener(apiLn)
	if serverTLS != nil {
		// Plain HTTP on this port gets a 503 (a node from before mutual TLS falls back to Docker
		// Hub) instead of Go's 400 (a failed pull).
		apiLn = tls.NewListener(tlsfiles.AnswerPlainHTTP(apiLn), serverTLS)
	}
	runners := []runner{httpRunner("api", api, apiLn, f.shutdownTimeout)}
	if f.metricsListen != "" {
		ops := &http.Server{Handler: srv.OpsHandler(), ReadHeaderTimeout: 10 * time.Second}
		opsLn, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			apiLn.Close()
			return fmt.Errorf("listen %s: %w", f.metricsListen, err)
		}
		runners = append(runners, httpRunner("metrics", ops, opsLn, f.shutdownTimeout))
	}
	names := make([]string, 0, len(ups))
	for n, u := range ups {
		names = append(names, n+"="+u.String())
	}
	sort.Strings(names)
	log.Info("hubcache proxy listening", "listen", f.listen, "metrics_listen", f.metricsListen,
		"data_dir", dataDir, "blob_store", blobStoreForLog(f.blobStore), "metadata", metadataKind(f.metadata),
		"max_size", f.maxSize, "upstreams", names, "tag_ttl", f.tagTTL.String(), "version", version)

	serveCtx, cancel := drainedContext(ctx, srv, f.ops.drainDelay, log)
	defer cancel()
	return runAll(serveCtx, runners...)
}

// storageOptions turns the storage, pool, redirect and eviction flags into server options.
func storageOptions(f proxyFlags) ([]server.Option, error) {
	opts := []server.Option{
		server.WithBlobStoreURL(f.blobStore),
		server.WithMetadataURL(f.metadata),
		server.WithPostgresPool(server.PostgresPool{
			MaxConns:        f.pgMaxConns,
			MinConns:        f.pgMinConns,
			MaxConnLifetime: f.pgMaxLifetime,
			MaxConnIdleTime: f.pgMaxIdle,
			HealthCheck:     f.pgHealth,
			ConnectTimeout:  f.pgConnect,
		}),
		server.WithCleanupInterval(f.cleanupEvery),
	}
	// Conflicts between options are checked by server.New itself.
	if f.s3Redirect {
		if f.s3RedirectTTL <= 0 {
			// 0 would mean "no redirect": refuse rather than silently serve everything.
			return nil, errors.New("--s3-redirect-ttl must be positive")
		}
		opts = append(opts, server.WithS3Redirect(f.s3RedirectTTL))
	}
	if f.maxSize != "" {
		n, err := evict.ParseSize(f.maxSize)
		if err != nil {
			return nil, fmt.Errorf("--max-size: %w", err)
		}
		if n <= 0 {
			return nil, errors.New("--max-size must be positive (leave it empty for no eviction)")
		}
		if f.retention <= 0 || f.evictInterval <= 0 {
			return nil, errors.New("--retention and --evict-interval must be positive")
		}
		opts = append(opts, server.WithEviction(server.Eviction{MaxSize: n, Retention: f.retention, Interval: f.evictInterval}))
	}
	return opts, nil
}

// blobStoreForLog names the blob store (URLs of --blob-store hold no secrets).
func blobStoreForLog(u string) string {
	if u == "" {
		return "file (data dir)"
	}
	return u
}

// metadataKind names the metadata store without its DSN, which may hold a password.
func metadataKind(u string) string {
	kind, _, ok := strings.Cut(u, "://")
	if u == "" || !ok {
		return "sqlite (data dir)"
	}
	return kind
}
