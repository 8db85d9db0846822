package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/hubcache/hubcache/proxy/oci"
	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/hubcache/hubcache/proxy/verify"
)

// transports keeps one authenticated RoundTripper per repository (upstream.TransportCache):
// the token handshake happens once per repository, not on every request; entries are
// renewed after maxAge so rotated credentials are picked up.
type transports struct {
	base     http.RoundTripper
	keychain authn.Keychain
	cache    *upstream.TransportCache
}

func newTransports(base http.RoundTripper, kc authn.Keychain, max int, maxAge time.Duration, now func() time.Time) *transports {
	return &transports{base: base, keychain: kc, cache: upstream.NewTransportCache(max, maxAge, now)}
}

func (t *transports) get(ctx context.Context, up upstream.Endpoint, repository string) (http.RoundTripper, error) {
	key := up.Registry + "/" + repository
	if rt, ok := t.cache.Get(key); ok {
		return rt, nil
	}
	reg, err := up.NameRegistry()
	if err != nil {
		return nil, err
	}
	// Credentials only for repositories anonymous upstream serves (visibility.go).
	rt, err := pullTransport(ctx, up, reg, t.keychain, t.base, repository)
	if err != nil {
		return nil, err
	}
	return t.cache.Add(key, rt), nil
}

// fallback fetches the request from the upstream registry itself and streams the answer
// back: degraded (nothing is cached) but the pull goes on.
func (s *Server) fallback(w http.ResponseWriter, r *http.Request, rt route) (int64, error) {
	up := s.upstreams[rt.registry]
	t, err := s.transports.get(r.Context(), up, rt.repository)
	if err != nil {
		return 0, s.upstreamFailed(w, r, err)
	}
	u := *up.URL
	u.Path = rt.upstreamPath()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), nil)
	if err != nil {
		return 0, s.upstreamFailed(w, r, err)
	}
	copyRequestHeaders(req.Header, r.Header)
	// The client follows redirects (Docker Hub sends blobs from a CDN); the token transport
	// sends credentials only to the registry host itself.
	client := &http.Client{Transport: t, CheckRedirect: s.guard.CheckRedirect}
	resp, err := client.Do(req)
	if err != nil {
		return 0, s.upstreamFailed(w, r, err)
	}
	defer resp.Body.Close()
	if d, ok := rt.verifiable(); ok && r.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
		// Nothing vouches for upstream's bytes here but their digest: the last bytes are
		// held back until it checks out, so a mismatch ends in a cut response.
		resp.Body = verify.NewReader(resp.Body, d, resp.ContentLength, func(err error) {
			s.log.Warn("fallback bytes do not match their digest; response cut", "path", r.URL.Path, "error", err.Error())
		})
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return 0, s.denied(w, r, fmt.Errorf("upstream answered %s", resp.Status))
	}
	return relay(w, r, resp, upstreamHeaderFilter, s.buffers)
}

// upstreamFailed answers when neither the proxy nor upstream could give an answer.
func (s *Server) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return fmt.Errorf("client went away: %w", err)
	}
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return s.denied(w, r, err)
	}
	err = fmt.Errorf("upstream: %w", err)
	oci.WriteError(w, r, nil, &oci.Error{Status: http.StatusServiceUnavailable, Code: oci.CodeUnavailable,
		Message: "the cache is unreachable and so is the upstream registry", Cause: err})
	return err
}

// denied answers an upstream refusal as the proxy does: 403 DENIED, not 401, which would
// send the client into a token handshake with the node that cannot succeed.
func (s *Server) denied(w http.ResponseWriter, r *http.Request, err error) error {
	err = fmt.Errorf("upstream refused access: %w", err)
	oci.WriteError(w, r, nil, &oci.Error{Status: http.StatusForbidden, Code: oci.CodeDenied,
		Message: "the upstream registry refused access", Cause: err})
	return err
}

// verifiable returns the digest a full GET of rt must match: every blob, and manifests
// asked for by digest.
func (rt route) verifiable() (v1.Hash, bool) {
	if rt.kind != kindBlob && rt.kind != kindManifest {
		return v1.Hash{}, false
	}
	d, err := v1.NewHash(rt.reference)
	if err != nil || d.Algorithm != "sha256" {
		return v1.Hash{}, false
	}
	return d, true
}
