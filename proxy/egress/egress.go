// Package egress decides where requests to upstream registries may go. The configured
// upstreams (and the HTTP proxy of the environment) are trusted as the operator wrote them;
// anything an upstream sends us to — a redirect, a token realm — must be https on a public
// address. Addresses are checked when the connection is dialed, after name resolution, so a
// name that resolves to a private address (DNS rebinding) is refused too.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// ErrForbidden is returned for a destination the policy refuses.
var ErrForbidden = errors.New("destination not allowed for upstream traffic")

// maxRedirects bounds a redirect chain.
const maxRedirects = 10

// Guard is the policy for one set of upstreams.
type Guard struct {
	trusted       map[string]bool // host:port
	allowLoopback bool
}

// Option configures a Guard.
type Option func(*Guard)

// AllowLoopback lets redirects and dials reach loopback addresses over plain http: only for
// tests, whose fake registries listen on 127.0.0.1.
func AllowLoopback() Option { return func(g *Guard) { g.allowLoopback = true } }

// New returns a guard that trusts the given upstream base URLs and the HTTP(S)_PROXY of the
// environment.
func New(upstreams []*url.URL, opts ...Option) *Guard {
	g := &Guard{trusted: map[string]bool{}}
	for _, u := range upstreams {
		g.trust(u)
	}
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		if v := os.Getenv(k); v != "" {
			if u, err := url.Parse(v); err == nil && u.Host != "" {
				g.trust(u)
			}
		}
	}
	for _, o := range opts {
		o(g)
	}
	return g
}

func (g *Guard) trust(u *url.URL) {
	if u == nil || u.Host == "" {
		return
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	g.trusted[net.JoinHostPort(strings.ToLower(u.Hostname()), port)] = true
}

// Public reports whether ip may be reached by upstream traffic that is not trusted: not
// loopback, private, link-local, CGNAT, unspecified or multicast.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid(), ip.IsLoopback(), ip.IsPrivate(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(),
		ip.IsUnspecified(), ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return false
	}
	if cgnat := netip.MustParsePrefix("100.64.0.0/10"); cgnat.Contains(ip) {
		return false
	}
	return true
}

func (g *Guard) allowed(ip netip.Addr) bool {
	return Public(ip) || (g.allowLoopback && ip.Unmap().IsLoopback())
}

// CheckRedirect is an http.Client CheckRedirect: only https (plain http only to loopback
// when allowed for tests), at most 10 hops, and no literal address that is not public. Names
// are checked when dialed (DialContext).
func (g *Guard) CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrForbidden, maxRedirects)
	}
	host := req.URL.Hostname()
	if req.URL.Scheme != "https" {
		ip, err := netip.ParseAddr(host)
		if !(g.allowLoopback && err == nil && ip.Unmap().IsLoopback()) && !(g.allowLoopback && host == "localhost") {
			return fmt.Errorf("%w: redirect to %s: only https", ErrForbidden, req.URL.Redacted())
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil && !g.allowed(ip) {
		return fmt.Errorf("%w: redirect to %s", ErrForbidden, req.URL.Redacted())
	}
	return nil
}

// DialFunc dials like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DialContext wraps dial: trusted addresses are dialed as given; any other name is resolved
// here and dialed by address only when every address it resolves to is allowed.
func (g *Guard) DialContext(dial DialFunc) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if g.trusted[net.JoinHostPort(strings.ToLower(host), port)] {
			return dial(ctx, network, addr)
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else {
			ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if err != nil {
				return nil, fmt.Errorf("resolving %s: %w", host, err)
			}
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("resolving %s: no address", host)
		}
		for _, ip := range ips {
			if !g.allowed(ip) {
				return nil, fmt.Errorf("%w: %s resolves to %s", ErrForbidden, host, ip)
			}
		}
		var lastErr error
		for _, ip := range ips {
			c, err := dial(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			lastErr = err
		}
		return nil, lastErr
	}
}

// Transport returns a clone of http.DefaultTransport that dials through the guard.
func (g *Guard) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = g.DialContext((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	return t
}
