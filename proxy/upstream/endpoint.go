package upstream

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/hubcache/hubcache/proxy/imageref"
)

// Endpoint is one upstream registry: the name images use for it and where its /v2/ API
// lives. The proxy and the node read it from the same REGISTRY=URL flag.
type Endpoint struct {
	// Registry is the canonical name used in cache paths ("docker.io", "ghcr.io").
	Registry string
	// URL is where the registry's /v2/ API lives (scheme and host, no path).
	URL *url.URL
}

func (e Endpoint) String() string { return e.Registry + "=" + e.URL.String() }

// NameRegistry is the go-containerregistry view of where the registry API lives, which the
// token flow needs to match its own requests to the registry.
func (e Endpoint) NameRegistry() (name.Registry, error) {
	var opts []name.Option
	if e.URL.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	r, err := name.NewRegistry(e.URL.Host, opts...)
	if err != nil {
		return name.Registry{}, fmt.Errorf("upstream %s: %w", e, err)
	}
	return r, nil
}

// ParseEndpoint reads "REGISTRY=URL", e.g. "docker.io=https://registry-1.docker.io". This is
// the one parser of the pair; Docker Hub aliases name docker.io.
func ParseEndpoint(s string) (Endpoint, error) {
	reg, raw, ok := strings.Cut(strings.TrimSpace(s), "=")
	reg = strings.ToLower(strings.TrimSpace(reg))
	raw = strings.TrimSpace(raw)
	if !ok || reg == "" || raw == "" {
		return Endpoint{}, fmt.Errorf("upstream %q: want REGISTRY=URL, e.g. docker.io=https://registry-1.docker.io", s)
	}
	if !imageref.ValidHost(reg) {
		return Endpoint{}, fmt.Errorf("upstream %q: %q is not a registry host[:port]", s, reg)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Endpoint{}, fmt.Errorf("upstream %q: %w", s, err)
	}
	base, err := checkURL(u)
	if err != nil {
		return Endpoint{}, fmt.Errorf("upstream %q: %w", s, err)
	}
	return Endpoint{Registry: imageref.CanonicalRegistry(reg), URL: base}, nil
}

// ParseEndpoints reads every REGISTRY=URL pair of a repeated flag; one value may hold
// several separated by commas (how an environment variable lists more than one). A
// registry given twice is an error.
func ParseEndpoints(values []string) ([]Endpoint, error) {
	var out []Endpoint
	seen := map[string]bool{}
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			e, err := ParseEndpoint(s)
			if err != nil {
				return nil, err
			}
			if seen[e.Registry] {
				return nil, fmt.Errorf("upstream: registry %s given twice", e.Registry)
			}
			seen[e.Registry] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// checkURL accepts scheme://host[:port] with scheme http or https and nothing else, and
// returns it without a trailing slash.
func checkURL(u *url.URL) (*url.URL, error) {
	if u == nil {
		return nil, fmt.Errorf("no URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("URL scheme must be https or http")
	}
	if !imageref.ValidHost(u.Host) {
		return nil, fmt.Errorf("URL host %q is not a host[:port]", u.Host)
	}
	if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("URL must be scheme://host[:port] only (the registry API lives at /v2/)")
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}
