package node

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/hubcache/hubcache/proxy/imageref"
)

// Upstream is a registry the node may fetch from itself when the proxy is unreachable.
// Registries that are not configured are never contacted (no open proxy).
type Upstream struct {
	// Registry is the canonical name used in cache paths ("docker.io", "ghcr.io").
	Registry string
	// URL is where the registry's /v2/ API lives (scheme and host, no path).
	URL *url.URL
}

// ParseUpstream reads "REGISTRY=URL", e.g. "docker.io=https://registry-1.docker.io".
func ParseUpstream(s string) (Upstream, error) {
	reg, raw, ok := strings.Cut(s, "=")
	if !ok || reg == "" || raw == "" {
		return Upstream{}, fmt.Errorf("upstream %q: want REGISTRY=URL, e.g. docker.io=https://registry-1.docker.io", s)
	}
	if !imageref.ValidHost(reg) {
		return Upstream{}, fmt.Errorf("upstream %q: %q is not a registry host[:port]", s, reg)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Upstream{}, fmt.Errorf("upstream %q: %w", s, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return Upstream{}, fmt.Errorf("upstream %q: URL scheme must be https or http", s)
	}
	if !imageref.ValidHost(u.Host) {
		return Upstream{}, fmt.Errorf("upstream %q: URL host %q is not a host[:port]", s, u.Host)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return Upstream{}, fmt.Errorf("upstream %q: URL must be scheme://host[:port] only (the registry API lives at /v2/)", s)
	}
	return Upstream{
		Registry: imageref.CanonicalRegistry(strings.ToLower(reg)),
		URL:      &url.URL{Scheme: u.Scheme, Host: u.Host},
	}, nil
}

func (u Upstream) String() string { return u.Registry + "=" + u.URL.String() }

// nameRegistry is the go-containerregistry view of where the registry API lives, which the
// token flow needs to match its own requests to the registry.
func (u Upstream) nameRegistry() (name.Registry, error) {
	var opts []name.Option
	if u.URL.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	r, err := name.NewRegistry(u.URL.Host, opts...)
	if err != nil {
		return name.Registry{}, fmt.Errorf("upstream %s: %w", u, err)
	}
	return r, nil
}
