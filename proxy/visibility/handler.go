package visibility

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/imageref"
	"github.com/hubcache/hubcache/proxy/oci"
)

// Path is where Handler is served on the proxy's API listener.
const Path = "/hubcache/v1/visibility"

// MaxRepositories is how many repository values one request may ask about.
const MaxRepositories = 64

// lookupParallelism bounds the upstream checks one request starts at once.
const lookupParallelism = 16

// Response is the endpoint's 200 body.
type Response struct {
	Repositories []RepositoryAnswer `json:"repositories"`
}

// RepositoryAnswer is one entry of Response, in the order asked. Repository is echoed as
// given; Visibility is "public", "private" or "unknown"; Served says whether the proxy
// serves the repository (public, or allow-listed).
type RepositoryAnswer struct {
	Repository string `json:"repository"`
	Visibility State  `json:"visibility"`
	Served     bool   `json:"served"`
}

// Handler serves GET Path?repository=docker.io/library/nginx&repository=…: the webhook asks
// it before rewriting images of Pods that have imagePullSecrets. Names are full cache names
// with their registry ("docker.io/acme/billing"); "docker.io/nginx" is read as
// "docker.io/library/nginx".
func Handler(c *Checker, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeError(w, r, http.StatusMethodNotAllowed, "UNSUPPORTED", "only GET is supported")
			return
		}
		names := r.URL.Query()["repository"]
		switch {
		case len(names) == 0:
			writeError(w, r, http.StatusBadRequest, "NAME_INVALID", "at least one repository parameter is required")
			return
		case len(names) > MaxRepositories:
			writeError(w, r, http.StatusBadRequest, "UNSUPPORTED",
				"at most "+strconv.Itoa(MaxRepositories)+" repository parameters per request")
			return
		}
		repos := make([]cache.Repo, len(names))
		for i, n := range names {
			reg, path, err := imageref.Split(complete(n))
			if err != nil {
				writeError(w, r, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("invalid repository name %q", truncate(n)))
				return
			}
			repos[i] = cache.Repo{Registry: reg, Path: path}
		}

		answers := make([]Answer, len(repos))
		unique := map[cache.Repo][]int{}
		for i, repo := range repos {
			unique[repo] = append(unique[repo], i)
		}
		sem := make(chan struct{}, lookupParallelism)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for repo, idx := range unique {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				a := c.Lookup(r.Context(), repo)
				mu.Lock()
				for _, i := range idx {
					answers[i] = a
				}
				mu.Unlock()
			})
		}
		wg.Wait()

		resp := Response{Repositories: make([]RepositoryAnswer, len(names))}
		for i, a := range answers {
			resp.Repositories[i] = RepositoryAnswer{Repository: names[i], Visibility: a.Visibility, Served: a.Served}
		}
		body, err := json.Marshal(resp)
		if err != nil {
			log.Error("encoding visibility answer", "error", err)
			writeError(w, r, http.StatusInternalServerError, "UNKNOWN", "internal error")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

// complete adds Docker Hub's implicit "library/" to a one-component name ("docker.io/nginx"),
// as the registry API does for /v2/docker.io/nginx/….
func complete(name string) string {
	reg, path, ok := strings.Cut(name, "/")
	if ok && imageref.IsDockerHub(reg) && path != "" && !strings.Contains(path, "/") {
		return reg + "/library/" + path
	}
	return name
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// writeError sends an OCI error with the proxy's one writer (oci.WriteError).
func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	oci.WriteError(w, r, nil, oci.NewError(status, code, message))
}
