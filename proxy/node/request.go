package node

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/hubcache/hubcache/proxy/imageref"
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

var (
	tagPattern    = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestPattern = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// parseRoute validates a request URL with the proxy's path rules (docs/proxy.md), so that
// the node answers bad requests exactly as the proxy would, without asking it. Both the
// rewritten form (/v2/docker.io/library/nginx/manifests/1.27) and the mirror form
// (/v2/library/nginx/manifests/1.27?ns=docker.io, or no ns) are accepted.
func parseRoute(u *url.URL) (route, error) {
	if strings.Contains(u.EscapedPath(), "%") {
		// Names, tags and digests never need escaping; an escaped '/' or '.' only serves
		// to confuse whoever parses the path next.
		return route{}, refuse(http.StatusBadRequest, codeNameInvalid, "percent-encoded characters are not allowed in registry paths")
	}
	if u.Path == "/v2" || u.Path == "/v2/" {
		return route{kind: kindPing}, nil
	}
	rest, ok := strings.CutPrefix(u.Path, "/v2/")
	if !ok {
		return route{}, refuse(http.StatusNotFound, codeUnsupported, "only the /v2/ registry API is served here")
	}
	if strings.Contains(u.Path, "/blobs/uploads/") || strings.HasSuffix(u.Path, "/blobs/uploads") {
		return route{}, refuse(http.StatusMethodNotAllowed, codeUnsupported, "this registry is read-only")
	}
	segs := strings.Split(rest, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return route{}, refuse(http.StatusBadRequest, codeNameInvalid, "empty, '.' and '..' path components are not allowed")
		}
	}
	if len(segs) < 3 {
		return route{}, refuse(http.StatusNotFound, codeUnsupported, "unknown registry API path")
	}
	n := len(segs)
	var rt route
	switch {
	case segs[n-2] == "manifests":
		rt.kind = kindManifest
		rt.reference = segs[n-1]
		if strings.Contains(rt.reference, ":") {
			if !digestPattern.MatchString(rt.reference) {
				return route{}, refuse(http.StatusBadRequest, codeDigestInvalid, "invalid digest %q", rt.reference)
			}
		} else if !tagPattern.MatchString(rt.reference) {
			// No manifest can exist under a malformed tag.
			return route{}, refuse(http.StatusNotFound, codeManifestUnknown, "invalid tag %q", rt.reference)
		}
	case segs[n-2] == "blobs":
		rt.kind = kindBlob
		rt.reference = segs[n-1]
		if !digestPattern.MatchString(rt.reference) {
			return route{}, refuse(http.StatusBadRequest, codeDigestInvalid, "invalid digest %q", rt.reference)
		}
	default:
		// Tag lists, the catalog and referrers: a pull-through cache only knows what was
		// pulled, and pulls never need them.
		return route{}, refuse(http.StatusNotFound, codeUnsupported, "unknown registry API path")
	}
	reg, repo, err := resolveName(segs[:n-2], u.Query())
	if err != nil {
		return route{}, err
	}
	rt.registry, rt.repository = reg, repo
	return rt, nil
}

// resolveName finds the upstream registry and repository of a name: the first of at least
// two components is a registry when it looks like a host (Docker Hub namespaces never
// contain '.' or ':'); otherwise the name is a repository on the registry in ?ns=, or on
// Docker Hub without one.
func resolveName(segs []string, q url.Values) (registry, repository string, err error) {
	registry = imageref.DockerHub
	if len(segs) >= 2 && looksLikeHost(segs[0]) {
		registry, segs = segs[0], segs[1:]
	} else if ns := q.Get("ns"); ns != "" {
		if !imageref.ValidHost(ns) {
			return "", "", refuse(http.StatusNotFound, codeNameUnknown, "registry in ns is not served here")
		}
		registry = ns
	}
	registry = imageref.CanonicalRegistry(strings.ToLower(registry))
	if registry == imageref.DockerHub && len(segs) == 1 {
		segs = []string{"library", segs[0]}
	}
	registry, repository, err = imageref.Split(registry + "/" + strings.Join(segs, "/"))
	if err != nil {
		if errors.Is(err, imageref.ErrInvalid) {
			return "", "", refuse(http.StatusBadRequest, codeNameInvalid, "%v", err)
		}
		return "", "", err
	}
	return registry, repository, nil
}

func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
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
