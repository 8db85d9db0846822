package node

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/hubcache/hubcache/proxy/upstream"
)

// The node's credentials only raise the rate limit; like the proxy's, they never widen what
// can be read. In fallback the proxy cannot be asked, so the node decides for itself, with
// the same test the proxy uses: a repository is public when an anonymous token may pull it
// (an anonymous manifest HEAD answers 200 or 404, which Docker Hub does not count against
// the pull limit). Only then are credentials used; anything else (denied, no answer) is
// fetched anonymously, so a private repository gets upstream's own refusal.

// visibilityProbeTag is the reference of the anonymous HEAD; a missing tag (404) still shows
// that the anonymous token may pull the repository.
const visibilityProbeTag = "latest"

// pullTransport returns the transport to fetch repository with: credentialed only when the
// keychain has credentials for the registry and the repository is public.
func pullTransport(ctx context.Context, up upstream.Endpoint, reg name.Registry, kc authn.Keychain, base http.RoundTripper, repository string) (http.RoundTripper, error) {
	scope := []string{reg.Repo(repository).Scope(transport.PullScope)}
	auth, err := upstream.Authenticate(kc, up.Registry, reg.Repo(repository))
	if err != nil {
		return nil, err
	}
	anon, err := transport.NewWithContext(ctx, reg, authn.Anonymous, base, scope)
	if err != nil {
		return nil, fmt.Errorf("authenticating anonymously to %s for %s: %w", up.URL.Host, repository, err)
	}
	if auth == authn.Anonymous || !anonymouslyPullable(ctx, up, anon, repository) {
		return anon, nil
	}
	rt, err := transport.NewWithContext(ctx, reg, auth, base, scope)
	if err != nil {
		return nil, fmt.Errorf("authenticating to %s for %s: %w", up.URL.Host, repository, err)
	}
	return rt, nil
}

// anonymouslyPullable sends the anonymous manifest HEAD; only 200 and 404 say yes.
func anonymouslyPullable(ctx context.Context, up upstream.Endpoint, anon http.RoundTripper, repository string) bool {
	u := *up.URL
	u.Path = "/v2/" + repository + "/manifests/" + visibilityProbeTag
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.String(), nil)
	if err != nil {
		return false
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json")
	// No redirects: a HEAD answer is all that is needed.
	client := &http.Client{Transport: anon, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound
}
