package server

import (
	"context"
	"net/http"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/oci"
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

// blobTarget reads /v2/<name>/blobs/sha256:<hex> with the registry handler's parser
// (oci.ParsePath). Anything else is left to the registry handler, which owns the error
// answers.
func blobTarget(r *http.Request) (cache.Repo, v1.Hash, bool) {
	p, err := oci.ParsePath(r.URL)
	if err != nil || p.Route != oci.RouteBlob {
		return cache.Repo{}, v1.Hash{}, false
	}
	return p.Repo, p.Digest, true
}
