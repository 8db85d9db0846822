package registry

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/imageref"
)

// Route is what a request path asks for; it also labels the request metrics.
type Route string

const (
	RouteBase        Route = "base"
	RouteManifest    Route = "manifest"
	RouteBlob        Route = "blob"
	RouteUpload      Route = "upload"
	RouteTags        Route = "tags"
	RouteCatalog     Route = "catalog"
	RouteReferrers   Route = "referrers"
	RouteNotFound    Route = "not_found"
	RouteInvalidName Route = "invalid"
)

// target is a parsed request path.
type target struct {
	route Route
	repo  cache.Repo
	// ref is the manifest reference as sent: a tag or a digest.
	ref string
	// digest is the blob digest, or the manifest digest when ref is a digest.
	digest   v1.Hash
	byDigest bool
}

// maxNameLength bounds "<registry>/<repository>", as in distribution's reference grammar.
const maxNameLength = 255

var (
	// pathComponent is distribution's grammar for one repository path component: lowercase
	// alphanumerics joined by single separators; it rejects "", ".", ".." and uppercase.
	pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	// registryHost is a lowercase host with an optional port.
	registryHost = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?$`)
	tagPattern   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	sha256Hex    = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// Path is a request path under the proxy's rules, for servers that must answer a request
// exactly as the proxy would without asking it (the node).
type Path struct {
	Route Route
	// Repo is set for RouteManifest and RouteBlob.
	Repo cache.Repo
	// Reference is the manifest tag or digest, or the blob digest, as sent.
	Reference string
}

// ParsePath applies the proxy's path rules to u without touching the network. A path the
// proxy refuses gives an *Error carrying the status and OCI code the proxy answers with. An
// upload path gives RouteUpload and no error: how a write is refused is the caller's choice.
func ParsePath(u *url.URL) (Path, error) {
	t, err := parsePath(u)
	return Path{Route: t.route, Repo: t.repo, Reference: t.ref}, err
}

// parsePath turns a request URL into a target. It never touches the network: everything
// invalid is refused here, before the Backend sees it.
func parsePath(u *url.URL) (target, error) {
	// Encoded slashes would let one path component smuggle several; refuse them outright.
	if strings.Contains(strings.ToLower(u.EscapedPath()), "%2f") {
		return target{route: RouteInvalidName}, newError(http.StatusBadRequest, codeNameInvalid, "encoded slash in path")
	}
	p := u.Path
	if p == "/v2" || p == "/v2/" {
		return target{route: RouteBase}, nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return target{route: RouteNotFound}, newError(http.StatusNotFound, codeUnsupported, "not a registry API path")
	}
	if rest == "_catalog" {
		return target{route: RouteCatalog}, newError(http.StatusNotFound, codeUnsupported, "the catalog is not offered by a pull-through cache")
	}
	parts := strings.Split(rest, "/")
	n := len(parts)
	var t target
	var nameParts []string
	switch {
	case n >= 3 && parts[n-3] == "blobs" && parts[n-2] == "uploads":
		return target{route: RouteUpload}, nil
	case n >= 2 && parts[n-2] == "blobs" && parts[n-1] == "uploads":
		return target{route: RouteUpload}, nil
	case n >= 3 && parts[n-2] == "manifests":
		t.route, t.ref, nameParts = RouteManifest, parts[n-1], parts[:n-2]
	case n >= 3 && parts[n-2] == "blobs":
		t.route, t.ref, nameParts = RouteBlob, parts[n-1], parts[:n-2]
	case n >= 3 && parts[n-2] == "tags" && parts[n-1] == "list":
		return target{route: RouteTags}, newError(http.StatusNotFound, codeUnsupported, "tag listing is not offered by a pull-through cache")
	case n >= 3 && parts[n-2] == "referrers":
		return target{route: RouteReferrers}, newError(http.StatusNotFound, codeUnsupported, "the referrers API is not offered by a pull-through cache")
	default:
		return target{route: RouteNotFound}, newError(http.StatusNotFound, codeUnsupported, "not a registry API path")
	}

	repo, err := parseName(nameParts, u.Query())
	if err != nil {
		t.route = RouteInvalidName
		return t, err
	}
	t.repo = repo

	switch t.route {
	case RouteBlob:
		d, err := parseDigest(t.ref)
		if err != nil {
			t.route = RouteInvalidName
			return t, err
		}
		t.digest, t.byDigest = d, true
	case RouteManifest:
		if strings.Contains(t.ref, ":") {
			d, err := parseDigest(t.ref)
			if err != nil {
				t.route = RouteInvalidName
				return t, err
			}
			t.digest, t.byDigest = d, true
		} else if !tagPattern.MatchString(t.ref) {
			// No manifest can exist under an invalid tag: 404, as the OCI conformance suite
			// expects for a malformed reference, and nothing is fetched.
			return t, newError(http.StatusNotFound, codeManifestUnknown, "invalid tag")
		}
	}
	return t, nil
}

// parseName reads "<registry>/<repository>" or, in mirror form, "<repository>" with the
// registry from ?ns= (default docker.io). The first component is a registry when there are
// at least two and it contains "." or ":" or is "localhost": the reference grammar's rule.
func parseName(parts []string, q url.Values) (cache.Repo, error) {
	var registry string
	first := parts[0]
	if len(parts) >= 2 && (first == "localhost" || strings.ContainsAny(first, ".:")) {
		if !registryHost.MatchString(first) {
			return cache.Repo{}, newError(http.StatusBadRequest, codeNameInvalid, "invalid registry name")
		}
		registry, parts = first, parts[1:]
	} else {
		registry = imageref.DockerHub
		if ns := q.Get("ns"); ns != "" {
			if !registryHost.MatchString(ns) {
				return cache.Repo{}, newError(http.StatusNotFound, codeNameUnknown, "registry in ns is not served by this cache")
			}
			registry = ns
		}
	}
	registry = imageref.CanonicalRegistry(registry)
	for _, c := range parts {
		if !pathComponent.MatchString(c) {
			return cache.Repo{}, newError(http.StatusBadRequest, codeNameInvalid, "invalid repository name")
		}
	}
	path := strings.Join(parts, "/")
	if imageref.IsDockerHub(registry) && len(parts) == 1 {
		path = "library/" + path
	}
	full := registry + "/" + path
	if len(full) > maxNameLength {
		return cache.Repo{}, newError(http.StatusBadRequest, codeNameInvalid, "repository name longer than 255 characters")
	}
	// The same check the webhook's mapping uses (pkg/name plus distribution's grammar): the
	// proxy accepts exactly the names a rewritten reference can carry.
	reg, repository, err := imageref.Split(full)
	if err != nil {
		return cache.Repo{}, newError(http.StatusBadRequest, codeNameInvalid, "invalid repository name")
	}
	return cache.Repo{Registry: reg, Path: repository}, nil
}

// parseDigest accepts sha256 digests only: the algorithm every registry in use serves.
func parseDigest(s string) (v1.Hash, error) {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || !sha256Hex.MatchString(hex) {
		return v1.Hash{}, newError(http.StatusBadRequest, codeDigestInvalid, "invalid digest: want sha256:<64 lowercase hex>")
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex}, nil
}
