package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/fillcoord"
	"github.com/hubcache/hubcache/proxy/tlsfiles"
)

// FillSharing makes replicas that share a postgres:// metadata store fetch each cold blob
// from upstream once (proxy/fillcoord, docs/replicas.md).
type FillSharing struct {
	// Advertise is where the other replicas reach this one's registry listener (host:port).
	Advertise string
	// Secret authenticates replicas to each other's /internal/fills/ endpoint.
	Secret string
	// LeaseTTL is how long a fill lease lives without renewal (0: fillcoord.DefaultTTL).
	LeaseTTL time.Duration
	// TLS, when the registry listener serves TLS, is its certificate and CA bundle: the
	// replicas then read each other's fills over TLS, presenting that certificate and
	// verifying the peer's against the bundle for ServerName (they dial pod IPs, which the
	// shared certificate does not name). Nil: plain HTTP.
	TLS        *tlsfiles.Files
	ServerName string
}

// peerOptions are the fill client's options: TLS towards the other replicas when they serve
// it.
func (f *FillSharing) peerOptions() ([]fillcoord.UpstreamOption, error) {
	if f.TLS == nil {
		return nil, nil
	}
	cfg, err := f.TLS.PeerConfig(f.ServerName)
	if err != nil {
		return nil, fmt.Errorf("fill sharing over TLS: %w", err)
	}
	return []fillcoord.UpstreamOption{fillcoord.WithPeerTLS(cfg)}, nil
}

// WithFillSharing turns fill sharing on when the metadata store is postgres://. Without it,
// or with another metadata store, fills are coordinated within the process only.
func WithFillSharing(f FillSharing) Option { return func(o *options) { o.fills = &f } }

// newFillCoordinator returns the coordinator for o, or nil when fills are not shared.
func newFillCoordinator(ctx context.Context, o *options) (*fillcoord.Coordinator, error) {
	if o.fills == nil || !(strings.HasPrefix(o.metaURL, "postgres://") || strings.HasPrefix(o.metaURL, "postgresql://")) {
		return nil, nil
	}
	if o.fills.Advertise == "" {
		// A single replica on Postgres needs no sharing; several without it still work, at
		// the cost of one upstream fetch per replica for a cold blob.
		o.logger.Warn("fills are not shared with other replicas: no address to advertise (--advertise-addr, or POD_IP)")
		return nil, nil
	}
	if o.fills.Secret == "" {
		return nil, errors.New("fill sharing: no fill secret (--fill-secret); replicas would accept anyone's requests for their fills")
	}
	// A name unique to this process: a restarted replica must not inherit its old leases.
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	host, _ := os.Hostname()
	holder := host + "-" + hex.EncodeToString(b)
	opts := []fillcoord.Option{fillcoord.WithLogger(o.logger)}
	if o.fills.LeaseTTL > 0 {
		opts = append(opts, fillcoord.WithTTL(o.fills.LeaseTTL))
	}
	fc, err := fillcoord.New(ctx, o.metaURL, holder, o.fills.Advertise, opts...)
	if err != nil {
		return nil, fmt.Errorf("fill sharing: %w", err)
	}
	o.logger.Info("sharing fills with the other replicas", "advertise", o.fills.Advertise, "holder", holder)
	return fc, nil
}

// withFillEndpoint serves fillcoord.FillPath from c next to the registry API.
func withFillEndpoint(api http.Handler, c *cache.Cache, secret string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(fillcoord.FillPath, fillcoord.Handler(c, secret, log))
	mux.Handle("/", api)
	return mux
}
