package upstream

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/hubcache/hubcache/proxy/egress"
)

// Defaults.
const (
	// DefaultMaxManifestSize caps manifest bodies; real manifests and indexes are a few KiB,
	// and the OCI distribution spec suggests registries accept at least 4 MiB.
	DefaultMaxManifestSize = 4 << 20
	// DefaultTimeout bounds manifest requests, HEADs, transport setup (ping and token) and
	// the wait for a blob's response headers. Blob bodies are bounded by the caller's context.
	DefaultTimeout = 30 * time.Second
	// DefaultTransportCacheSize is how many per-repository authenticated transports are kept.
	DefaultTransportCacheSize = 1024
	// DefaultUserAgent is sent to upstream.
	DefaultUserAgent = "hubcache"
)

// Observer is told about every manifest and blob request sent upstream: the method, the
// configured registry name and the final status (0 when no response arrived).
type Observer func(method, registry string, status int)

// Option configures a Client.
type Option func(*options)

type options struct {
	keychain        authn.Keychain
	dockerConfigDir string
	base            http.RoundTripper
	timeout         time.Duration
	maxManifestSize int64
	userAgent       string
	logger          *slog.Logger
	observer        Observer
	cacheSize       int
	egressOpts      []egress.Option // redirect.go
}

func defaultOptions() options {
	return options{
		dockerConfigDir: DefaultDockerConfigDir(),
		timeout:         DefaultTimeout,
		maxManifestSize: DefaultMaxManifestSize,
		userAgent:       DefaultUserAgent,
		logger:          slog.New(slog.DiscardHandler),
		observer:        func(string, string, int) {},
		cacheSize:       DefaultTransportCacheSize,
	}
}

// WithKeychain sets where credentials come from, replacing the Docker config directory.
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithDockerConfigDir reads credentials from dir/config.json (default $DOCKER_CONFIG or
// ~/.docker). Ignored when WithKeychain is given.
func WithDockerConfigDir(dir string) Option {
	return func(o *options) {
		if dir != "" {
			o.dockerConfigDir = dir
		}
	}
}

// WithTransport sets the base round tripper (default: a clone of http.DefaultTransport).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.base = rt } }

// WithTimeout sets DefaultTimeout's bound.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithMaxManifestSize caps manifest bodies (bytes).
func WithMaxManifestSize(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxManifestSize = n
		}
	}
}

// WithUserAgent sets the User-Agent sent upstream.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithObserver is called for every upstream manifest and blob request, e.g. for metrics.
func WithObserver(f Observer) Option {
	return func(o *options) {
		if f != nil {
			o.observer = f
		}
	}
}

// WithTransportCacheSize sets how many per-repository transports (and their tokens) are kept.
func WithTransportCacheSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.cacheSize = n
		}
	}
}
