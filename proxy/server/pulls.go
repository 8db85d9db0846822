package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"

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

// pullMetrics counts what Docker Hub would have counted as pulls (client manifest GETs) and
// the pulls it did count (manifest GETs it answered for this replica), and from both the
// pulls the cache avoided.
//
// A pull avoided is not a property of one client request: containerd resolves a tag with a
// HEAD and then GETs the manifest by digest, so on a cold cache the upstream GET is made
// while answering the HEAD and the client's GET that follows is a hit; Docker Hub counted
// that pull all the same. What the cache saved is the difference, client GETs − upstream
// GETs. A counter cannot go down, so hubcache_pulls_avoided_total follows the highest value
// the difference has reached on this replica: an upstream GET that no client GET matched yet
// is subtracted from the next hits before they count.
type pullMetrics struct {
	requests *prometheus.CounterVec // label result: ok, error
	avoided  prometheus.Counter
	images   *prometheus.CounterVec // label repository, bounded by maxImages

	maxImages int
	mu        sync.Mutex
	named     map[string]bool // repositories with their own series
	// clientGets and upstreamGets are the two sides of the difference; counted is what
	// avoided has been raised to so far.
	clientGets, upstreamGets, counted int64
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

// clientGot counts a client manifest GET answered 200 and raises avoided to the difference
// when it is a new high.
func (p *pullMetrics) clientGot() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clientGets++
	if d := p.clientGets - p.upstreamGets; d > p.counted {
		p.avoided.Add(float64(d - p.counted))
		p.counted = d
	}
}

// upstreamGot counts a manifest GET that upstream answered with a manifest: a pull Docker Hub
// counted, whichever client request it was made for.
func (p *pullMetrics) upstreamGot() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstreamGets++
}

// wrap counts client manifest GETs of next.
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
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if rec.status != http.StatusOK {
			p.requests.WithLabelValues("error").Inc()
			return
		}
		p.requests.WithLabelValues("ok").Inc()
		p.images.WithLabelValues(p.repositoryLabel(path.Repo.String())).Inc()
		p.clientGot()
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

// ReadFrom lets a stored file reach the connection's ReadFrom (sendfile).
func (s *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	return io.Copy(s.ResponseWriter, src)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// countingUpstream counts the manifest GETs upstream answered with a manifest (200: the
// body came, even if the cache then refused it as damaged or too large). It sits below the
// negative cache and inside fill coordination, where every real upstream GET passes.
type countingUpstream struct {
	cache.Upstream
	pulls *pullMetrics
}

func (u countingUpstream) GetManifest(ctx context.Context, registry, repo, ref string) ([]byte, upstream.Descriptor, error) {
	body, desc, err := u.Upstream.GetManifest(ctx, registry, repo, ref)
	if err == nil || errors.Is(err, upstream.ErrDigestMismatch) || errors.Is(err, upstream.ErrTooLarge) {
		u.pulls.upstreamGot()
	}
	return body, desc, err
}
