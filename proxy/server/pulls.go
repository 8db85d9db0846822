package server

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/oci"
	"github.com/hubcache/hubcache/proxy/upstream"
)

// DefaultTopImages is how many repositories get their own hubcache_image_pulls_total series;
// the rest are counted under repository="other", so the series count stays bounded whatever
// clients pull.
const DefaultTopImages = 50

// otherImages is the repository label of every repository past the first DefaultTopImages.
const otherImages = "other"

// pullMetrics counts what Docker Hub would have counted as pulls: manifest GETs. A client
// manifest GET answered without an upstream manifest GET made on its behalf is a pull avoided.
type pullMetrics struct {
	requests *prometheus.CounterVec // label result: ok, error
	avoided  prometheus.Counter
	images   *prometheus.CounterVec // label repository, bounded by maxImages

	maxImages int
	mu        sync.Mutex
	named     map[string]bool // repositories with their own series
}

func newPullMetrics(reg prometheus.Registerer, maxImages int) (*pullMetrics, error) {
	p := &pullMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_manifest_requests_total",
			Help: "Client manifest GETs (what Docker Hub counts as pulls), by result (ok, error).",
		}, []string{"result"}),
		avoided: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubcache_pulls_avoided_total",
			Help: "Client manifest GETs answered without an upstream manifest GET made for them: Docker Hub pulls the cache saved.",
		}),
		images: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_image_pulls_total",
			Help: "Successful client manifest GETs by repository; the first repositories seen get their own series, the rest count as repository=\"other\".",
		}, []string{"repository"}),
		maxImages: maxImages,
		named:     map[string]bool{},
	}
	for _, c := range []prometheus.Collector{p.requests, p.avoided, p.images} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	p.requests.WithLabelValues("ok")
	p.requests.WithLabelValues("error")
	return p, nil
}

// repositoryLabel returns repo, or "other" once maxImages repositories have their own series.
func (p *pullMetrics) repositoryLabel(repo string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.named[repo] {
		return repo
	}
	if len(p.named) >= p.maxImages {
		return otherImages
	}
	p.named[repo] = true
	return repo
}

// upstreamGets is the tally a client request carries in its context: how many upstream
// manifest GETs were made while answering it.
type upstreamGets struct{ n atomic.Int64 }

type upstreamGetsKey struct{}

// wrap counts client manifest GETs of next and whether each needed an upstream GET.
func (p *pullMetrics) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		path, err := oci.ParsePath(r.URL)
		if err != nil || path.Route != oci.RouteManifest {
			next.ServeHTTP(w, r)
			return
		}
		tally := &upstreamGets{}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), upstreamGetsKey{}, tally)))
		if rec.status != http.StatusOK {
			p.requests.WithLabelValues("error").Inc()
			return
		}
		p.requests.WithLabelValues("ok").Inc()
		p.images.WithLabelValues(p.repositoryLabel(path.Repo.String())).Inc()
		if tally.n.Load() == 0 {
			p.avoided.Inc()
		}
	})
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// countingUpstream marks the requesting client's tally on every upstream manifest GET. Work
// shared between clients runs with the first client's context values, so only that client
// is charged with the GET.
type countingUpstream struct {
	cache.Upstream
}

func (u countingUpstream) GetManifest(ctx context.Context, registry, repo, ref string) ([]byte, upstream.Descriptor, error) {
	if t, ok := ctx.Value(upstreamGetsKey{}).(*upstreamGets); ok {
		t.n.Add(1)
	}
	return u.Upstream.GetManifest(ctx, registry, repo, ref)
}
