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
	kindTags
)

// route is a validated /v2/ request: which upstream registry and repository it is for and
// what it asks. Building the upstream path from these parts (never from the raw request
// path) is what keeps the fallback from being an open proxy.
type route struct {
	kind       kind
	registry   string // canonical, e.g. "docker.io"
	repository string // e.g. "library/nginx"
	reference  string // tag or digest for manifests, digest for blobs
	query      url.Values
}

var (
	tagPattern    = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestPattern = regexp.MustCompile(`^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
	// numberPattern bounds the tags/list "n" parameter.
	numberPattern = regexp.MustCompile(`^[0-9]{1,6}$`)
)

// parseRoute validates a request URL with the proxy's path rules. Both the rewritten form
// (/v2/docker.io/library/nginx/manifests/1.27) and the mirror form
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
	rt := route{query: url.Values{}}
	switch {
	case segs[n-2] == "tags" && segs[n-1] == "list":
		rt.kind = kindTags
		for _, p := range []string{"n", "last"} {
			v := u.Query().Get(p)
			if v == "" {
				continue
			}
			if p == "n" && !numberPattern.MatchString(v) || p == "last" && !tagPattern.MatchString(v) {
				return route{}, refuse(http.StatusBadRequest, codeUnsupported, "invalid %q parameter", p)
			}
			rt.query.Set(p, v)
		}
	case segs[n-2] == "manifests":
		rt.kind = kindManifest
		rt.reference = segs[n-1]
		if strings.Contains(rt.reference, ":") {
			if !digestPattern.MatchString(rt.reference) {
				return route{}, refuse(http.StatusBadRequest, codeDigestInvalid, "invalid digest %q", rt.reference)
			}
		} else if !tagPattern.MatchString(rt.reference) {
			return route{}, refuse(http.StatusBadRequest, codeNameInvalid, "invalid tag %q", rt.reference)
		}
	case segs[n-2] == "blobs":
		rt.kind = kindBlob
		rt.reference = segs[n-1]
		if !digestPattern.MatchString(rt.reference) {
			return route{}, refuse(http.StatusBadRequest, codeDigestInvalid, "invalid digest %q", rt.reference)
		}
	default:
		return route{}, refuse(http.StatusNotFound, codeUnsupported, "unknown registry API path")
	}
	reg, repo, err := resolveName(segs[:n-2], u.Query())
	if err != nil {
		return route{}, err
	}
	rt.registry, rt.repository = reg, repo
	return rt, nil
}

// resolveName finds the upstream registry and repository of a name: the first component
// is a registry when it looks like a host (Docker Hub namespaces never contain '.' or ':');
// otherwise the name is a repository on the registry in ?ns=, or Docker Hub without one.
func resolveName(segs []string, q url.Values) (registry, repository string, err error) {
	full := strings.Join(segs, "/")
	if looksLikeHost(segs[0]) && len(segs) < 2 {
		return "", "", refuse(http.StatusBadRequest, codeNameInvalid, "name %q has a registry but no repository", full)
	}
	if !looksLikeHost(segs[0]) {
		ns := imageref.DockerHub
		if vs := q["ns"]; len(vs) > 0 {
			if len(vs) > 1 || !imageref.ValidHost(vs[0]) {
				return "", "", refuse(http.StatusBadRequest, codeNameInvalid, "invalid ns parameter")
			}
			ns = vs[0]
		}
		full = imageref.CanonicalRegistry(ns) + "/" + full
	}
	registry, repository, err = imageref.Split(full)
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
	case kindTags:
		return "/v2/" + rt.repository + "/tags/list"
	default:
		return "/v2/"
	}
}
