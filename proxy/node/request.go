package node

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/hubcache/hubcache/proxy/oci"
)

type kind int

const (
	kindPing kind = iota + 1
	kindManifest
	kindBlob
)

// route is a validated /v2/ request: which upstream registry and repository it is for and
// what it asks. Building the upstream path from these parts (never from the raw request
// path) is what keeps the fallback from being an open proxy.
type route struct {
	kind       kind
	registry   string // canonical, e.g. "docker.io"
	repository string // e.g. "library/nginx"
	reference  string // tag or digest for manifests, digest for blobs
}

// parseRoute validates a request URL with the proxy's own path parser (oci.ParsePath),
// so that the node answers bad requests exactly as the proxy would, without asking it. Both
// the rewritten form (/v2/docker.io/library/nginx/manifests/1.27) and the mirror form
// (/v2/library/nginx/manifests/1.27?ns=docker.io, or no ns) are accepted. The node is
// stricter in two ways: it refuses any percent-encoding and any empty, "." or ".." component,
// the reference included, because it forwards the request to the proxy or upstream.
func parseRoute(u *url.URL) (route, error) {
	if strings.Contains(u.EscapedPath(), "%") {
		// Names, tags and digests never need escaping; an escaped '/' or '.' only serves
		// to confuse whoever parses the path next.
		return route{}, oci.NewError(http.StatusBadRequest, oci.CodeNameInvalid, "percent-encoded characters are not allowed in registry paths")
	}
	p, err := oci.ParsePath(u)
	switch p.Route {
	case oci.RouteBase:
		return route{kind: kindPing}, nil
	case oci.RouteUpload:
		return route{}, oci.NewError(http.StatusMethodNotAllowed, oci.CodeUnsupported, "this registry is read-only")
	}
	if rest, ok := strings.CutPrefix(u.Path, "/v2/"); ok {
		for _, s := range strings.Split(rest, "/") {
			if s == "" || s == "." || s == ".." {
				return route{}, oci.NewError(http.StatusBadRequest, oci.CodeNameInvalid, "empty, '.' and '..' path components are not allowed")
			}
		}
	}
	if err != nil {
		return route{}, err
	}
	rt := route{registry: p.Repo.Registry, repository: p.Repo.Path, reference: p.Reference}
	switch p.Route {
	case oci.RouteManifest:
		rt.kind = kindManifest
	case oci.RouteBlob:
		rt.kind = kindBlob
	default:
		// Tag lists, the catalog and referrers come with an error above; nothing else is served.
		return route{}, oci.NewError(http.StatusNotFound, oci.CodeUnsupported, "unknown registry API path")
	}
	return rt, nil
}

// upstreamPath is the request path on the upstream registry itself.
func (rt route) upstreamPath() string {
	switch rt.kind {
	case kindManifest:
		return "/v2/" + rt.repository + "/manifests/" + rt.reference
	case kindBlob:
		return "/v2/" + rt.repository + "/blobs/" + rt.reference
	default:
		return "/v2/"
	}
}
