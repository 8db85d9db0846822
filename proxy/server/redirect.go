package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/imageref"
)

// redirectBlobs answers GET …/blobs/<digest> with a 307 to a presigned store URL when the blob
// is cached for the repository (same scoping as a served blob); everything else, and any blob
// that is not cached yet or whose store fails, goes to next, which serves it as usual. A
// repository that authorize refuses is never redirected: next answers it with the refusal.
func redirectBlobs(c *cache.Cache, next http.Handler, ttl time.Duration, authorize func(context.Context, cache.Repo) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if repo, d, ok := blobTarget(r); ok && authorize(r.Context(), repo) == nil {
				if u, ok := c.BlobURL(r.Context(), repo, d, ttl); ok {
					w.Header().Set("Docker-Content-Digest", d.String())
					http.Redirect(w, r, u, http.StatusTemporaryRedirect)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// blobTarget reads /v2/<name>/blobs/sha256:<hex> the way the registry handler does
// (first component a registry when it has "." or ":" or is localhost; else ?ns= or
// docker.io). Anything it does not recognise is left to the registry handler, which owns
// the error answers.
func blobTarget(r *http.Request) (cache.Repo, v1.Hash, bool) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/")
	if !ok {
		return cache.Repo{}, v1.Hash{}, false
	}
	name, digest, ok := strings.Cut(rest, "/blobs/")
	if !ok || name == "" || strings.Contains(digest, "/") {
		return cache.Repo{}, v1.Hash{}, false
	}
	d, err := v1.NewHash(digest)
	if err != nil || d.Algorithm != "sha256" {
		return cache.Repo{}, v1.Hash{}, false
	}
	parts := strings.Split(name, "/")
	registry := imageref.DockerHub
	if first := parts[0]; len(parts) >= 2 && (first == "localhost" || strings.ContainsAny(first, ".:")) {
		registry, parts = first, parts[1:]
	} else if ns := r.URL.Query().Get("ns"); ns != "" {
		registry = ns
	}
	if !imageref.ValidHost(registry) {
		return cache.Repo{}, v1.Hash{}, false
	}
	registry = imageref.CanonicalRegistry(registry)
	path := strings.Join(parts, "/")
	if imageref.IsDockerHub(registry) && len(parts) == 1 {
		path = "library/" + path
	}
	reg, repository, err := imageref.Split(registry + "/" + path)
	if err != nil {
		return cache.Repo{}, v1.Hash{}, false
	}
	return cache.Repo{Registry: reg, Path: repository}, d, true
}
