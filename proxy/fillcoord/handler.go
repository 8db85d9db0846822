package fillcoord

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/oci"
)

// FillPath is where a replica serves its fills to the others: GET FillPath+"sha256:…"?offset=N.
const FillPath = "/internal/fills/"

// SizeHeader carries the whole blob's size on fill responses.
const SizeHeader = "Hubcache-Blob-Size"

// Source is what the fill endpoint serves from: the cache (its fill in progress, else its
// store; cache.ErrNoFill when it has neither).
type Source interface {
	// OpenFill reads d from offset to the end as the bytes arrive; size is the whole blob's.
	// The reader fails (never ends early) when the fill fails.
	OpenFill(ctx context.Context, d v1.Hash, offset int64) (size int64, rc io.ReadCloser, err error)
}

// Handler serves FillPath for the other replicas, to callers that present secret as a Bearer
// token. An empty secret refuses every request.
func Handler(src Source, secret string, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if secret == "" || !ok || subtle.ConstantTimeCompare([]byte(token), []byte(secret)) != 1 {
			http.Error(w, "fill secret required", http.StatusUnauthorized)
			return
		}
		d, err := v1.NewHash(strings.TrimPrefix(r.URL.Path, FillPath))
		if err != nil {
			http.Error(w, "bad digest", http.StatusBadRequest)
			return
		}
		offset := int64(0)
		if v := r.URL.Query().Get("offset"); v != "" {
			offset, err = strconv.ParseInt(v, 10, 64)
			if err != nil || offset < 0 {
				http.Error(w, "bad offset", http.StatusBadRequest)
				return
			}
		}
		size, rc, err := src.OpenFill(r.Context(), d, offset)
		switch {
		case errors.Is(err, cache.ErrNoFill):
			http.Error(w, "no such fill", http.StatusNotFound)
			return
		case err != nil:
			log.Warn("serving a fill to another replica", "digest", d.String(), "error", err.Error())
			http.Error(w, "fill failed", http.StatusServiceUnavailable)
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set(SizeHeader, strconv.FormatInt(size, 10))
		// No Content-Length: the follower's body then ends when this handler returns, which
		// for a fill in progress is once the fill has ended (the blob is stored), while every
		// byte reaches it as soon as the digest checks out. With a length, the follower would
		// see the end with the last byte and look for the object before it is stored. The
		// follower knows the size from SizeHeader (and its own upstream HEAD).
		w.WriteHeader(http.StatusOK)
		if _, rerr, werr := oci.Stream(w, rc, make([]byte, 256<<10)); rerr != nil || werr != nil {
			// Break the connection so that the follower sees a failure, not an end.
			panic(http.ErrAbortHandler)
		}
	})
}
