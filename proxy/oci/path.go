package oci

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

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

// Path is a parsed request path.
type Path struct {
	Route Route
	// Repo is set for RouteManifest and RouteBlob.
	Repo Repo
	// Reference is the manifest tag or digest, or the blob digest, as sent.
	Reference string
	// Digest is the blob digest, or the manifest digest when Reference is one (ByDigest).
	Digest   v1.Hash
	ByDigest bool
}

var (
	// registryHost is a lowercase host with an optional port, as a path or ?ns= carries it.
	registryHost = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?$`)
	sha256Hex    = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// ParsePath applies hubcache's path rules to u without touching the network: everything
// invalid is refused here, before any content source sees it. Both the rewritten form
// (/v2/docker.io/library/nginx/manifests/1.27) and the mirror form
// (/v2/library/nginx/manifests/1.27?ns=docker.io, or no ns: docker.io) are accepted. A
// path refused gives an *Error carrying the status and OCI code to answer with, and a Path
// whose Route says what was asked (for metrics). An upload path gives RouteUpload and no
// error: how a write is refused is the caller's choice.
func ParsePath(u *url.URL) (Path, error) {
	// Encoded slashes would let one path component smuggle several; refuse them outright.
	if strings.Contains(strings.ToLower(u.EscapedPath()), "%2f") {
		return Path{Route: RouteInvalidName}, NewError(http.StatusBadRequest, CodeNameInvalid, "encoded slash in path")
	}
	p := u.Path
	if p == "/v2" || p == "/v2/" {
		return Path{Route: RouteBase}, nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return Path{Route: RouteNotFound}, NewError(http.StatusNotFound, CodeUnsupported, "not a registry API path")
	}
	if rest == "_catalog" {
		return Path{Route: RouteCatalog}, NewError(http.StatusNotFound, CodeUnsupported, "the catalog is not offered by a pull-through cache")
	}
	parts := strings.Split(rest, "/")
	n := len(parts)
	var t Path
	var nameParts []string
	switch {
	case n >= 3 && parts[n-3] == "blobs" && parts[n-2] == "uploads":
		return Path{Route: RouteUpload}, nil
	case n >= 2 && parts[n-2] == "blobs" && parts[n-1] == "uploads":
		return Path{Route: RouteUpload}, nil
	case n >= 3 && parts[n-2] == "manifests":
		t.Route, t.Reference, nameParts = RouteManifest, parts[n-1], parts[:n-2]
	case n >= 3 && parts[n-2] == "blobs":
		t.Route, t.Reference, nameParts = RouteBlob, parts[n-1], parts[:n-2]
	case n >= 3 && parts[n-2] == "tags" && parts[n-1] == "list":
		return Path{Route: RouteTags}, NewError(http.StatusNotFound, CodeUnsupported, "tag listing is not offered by a pull-through cache")
	case n >= 3 && parts[n-2] == "referrers":
		return Path{Route: RouteReferrers}, NewError(http.StatusNotFound, CodeUnsupported, "the referrers API is not offered by a pull-through cache")
	default:
		return Path{Route: RouteNotFound}, NewError(http.StatusNotFound, CodeUnsupported, "not a registry API path")
	}

	repo, err := parseName(nameParts, u.Query())
	if err != nil {
		t.Route = RouteInvalidName
		return t, err
	}
	t.Repo = repo

	switch t.Route {
	case RouteBlob:
		d, err := ParseDigest(t.Reference)
		if err != nil {
			t.Route = RouteInvalidName
			return t, err
		}
		t.Digest, t.ByDigest = d, true
	case RouteManifest:
		if strings.Contains(t.Reference, ":") {
			d, err := ParseDigest(t.Reference)
			if err != nil {
				t.Route = RouteInvalidName
				return t, err
			}
			t.Digest, t.ByDigest = d, true
		} else if !imageref.ValidTag(t.Reference) {
			// No manifest can exist under an invalid tag: 404, as the OCI conformance suite
			// expects for a malformed reference, and nothing is fetched.
			return t, NewError(http.StatusNotFound, CodeManifestUnknown, "invalid tag")
		}
	}
	return t, nil
}

// parseName reads "<registry>/<repository>" or, in mirror form, "<repository>" with the
// registry from ?ns= (default docker.io). Whether the first component is a registry is the
// reference grammar's rule (imageref.IsHostComponent).
func parseName(parts []string, q url.Values) (Repo, error) {
	var registry string
	first := parts[0]
	if len(parts) >= 2 && imageref.IsHostComponent(first) {
		if !registryHost.MatchString(first) {
			return Repo{}, NewError(http.StatusBadRequest, CodeNameInvalid, "invalid registry name")
		}
		registry, parts = first, parts[1:]
	} else {
		registry = imageref.DockerHub
		if ns := q.Get("ns"); ns != "" {
			if !registryHost.MatchString(ns) {
				return Repo{}, NewError(http.StatusNotFound, CodeNameUnknown, "registry in ns is not served by this cache")
			}
			registry = ns
		}
	}
	registry = imageref.CanonicalRegistry(registry)
	path := strings.Join(parts, "/")
	if imageref.IsDockerHub(registry) && len(parts) == 1 {
		path = "library/" + path
	}
	full := registry + "/" + path
	if len(full) > imageref.MaxNameLength {
		return Repo{}, NewError(http.StatusBadRequest, CodeNameInvalid, "repository name longer than 255 characters")
	}
	// The same check the webhook's mapping uses: the proxy accepts exactly the names a
	// rewritten reference can carry.
	reg, repository, err := imageref.Split(full)
	if err != nil {
		return Repo{}, NewError(http.StatusBadRequest, CodeNameInvalid, "invalid repository name")
	}
	return Repo{Registry: reg, Path: repository}, nil
}

// ParseDigest accepts sha256 digests only: the algorithm every registry in use serves.
func ParseDigest(s string) (v1.Hash, error) {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || !sha256Hex.MatchString(hex) {
		return v1.Hash{}, NewError(http.StatusBadRequest, CodeDigestInvalid, "invalid digest: want sha256:<64 lowercase hex>")
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex}, nil
}
