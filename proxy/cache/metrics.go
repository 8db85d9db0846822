package cache

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus series. Registered on the registerer given to New.
type metrics struct {
	hits        *prometheus.CounterVec
	misses      *prometheus.CounterVec
	staleServes prometheus.Counter
	revalidates *prometheus.CounterVec
	heals       *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	// fromCache and fromUpstream are bytes' two series, looked up once: they are added to for
	// every chunk a client is sent, and a label lookup hashes and locks each time.
	fromCache    prometheus.Counter
	fromUpstream prometheus.Counter
	fetchedB     prometheus.Counter
	upstreamReq  *prometheus.CounterVec
	degraded     *prometheus.CounterVec
	corrupted    prometheus.Counter
	// hashedReads and trustedReads are wholeReads' two series, looked up once.
	wholeReads   *prometheus.CounterVec
	hashedReads  prometheus.Counter
	trustedReads prometheus.Counter
	negative     prometheus.Counter
	fillsBusy    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, up Upstream, registries []string, inFlight func() float64) (*metrics, error) {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_cache_hits_total",
			Help: "Requests answered from the cache, by kind (manifest, blob).",
		}, []string{"kind"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_cache_misses_total",
			Help: "Requests that needed upstream content, by kind (manifest, blob).",
		}, []string{"kind"}),
		staleServes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubcache_cache_stale_serves_total",
			Help: "Tags served from the cache because upstream failed during revalidation.",
		}),
		revalidates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_cache_tag_revalidations_total",
			Help: "Tag revalidations that reached upstream, by result (unchanged, changed).",
		}, []string{"result"}),
		heals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_cache_heals_total",
			Help: "Cached records forgotten because their object was missing or damaged, by kind.",
		}, []string{"kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_blob_bytes_served_total",
			Help: "Blob bytes sent to clients, by source (cache: from the store; upstream: from a fill in progress).",
		}, []string{"source"}),
		fetchedB: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubcache_upstream_blob_bytes_total",
			Help: "Blob bytes received from upstream.",
		}),
		upstreamReq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_upstream_requests_total",
			Help: "Requests the cache made upstream, by method, kind and result (ok, not_found, unauthorized, rate_limited, unavailable, digest_mismatch, too_large).",
		}, []string{"method", "kind", "result"}),
		degraded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_degraded_requests_total",
			Help: "Requests answered without a store that failed (passed through or confirmed upstream), by store (metadata, blob_store) and kind.",
		}, []string{"store", "kind"}),
		corrupted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubcache_blob_verify_failures_total",
			Help: "Stored blobs whose bytes did not match their digest while being served; the response was cut and the blob dropped.",
		}),
		wholeReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_blob_whole_reads_total",
			Help: "Whole-blob reads from the store, by verification: hashed (checked against the digest as it streamed) or trusted (the same unchanged object hashed correctly within --verify-interval).",
		}, []string{"verification"}),
		negative: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubcache_negative_cache_hits_total",
			Help: "Upstream requests answered \"not found\" from the negative cache instead of asking upstream again.",
		}),
		fillsBusy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubcache_blob_fills_refused_total",
			Help: "Blob misses answered 503 because the cap on concurrent fills was reached.",
		}),
	}
	collectors := []prometheus.Collector{
		m.hits, m.misses, m.staleServes, m.revalidates, m.heals, m.bytes, m.fetchedB, m.upstreamReq, m.degraded,
		m.corrupted, m.wholeReads, m.negative, m.fillsBusy,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hubcache_blob_fills_in_flight",
			Help: "Blob fills from upstream in progress.",
		}, inFlight),
		&rateLimitCollector{up: up, registries: registries},
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.fromCache = m.bytes.WithLabelValues("cache")
	m.fromUpstream = m.bytes.WithLabelValues("upstream")
	m.hashedReads = m.wholeReads.WithLabelValues("hashed")
	m.trustedReads = m.wholeReads.WithLabelValues("trusted")
	for _, k := range []kind{kindManifest, kindBlob} {
		m.hits.WithLabelValues(string(k))
		m.misses.WithLabelValues(string(k))
	}
	return m, nil
}

func (m *metrics) corrupt()                  { m.corrupted.Inc() }
func (m *metrics) hit(k kind)                { m.hits.WithLabelValues(string(k)).Inc() }
func (m *metrics) miss(k kind)               { m.misses.WithLabelValues(string(k)).Inc() }
func (m *metrics) stale()                    { m.staleServes.Inc() }
func (m *metrics) revalidated(result string) { m.revalidates.WithLabelValues(result).Inc() }
func (m *metrics) healed(k string)           { m.heals.WithLabelValues(k).Inc() }
func (m *metrics) degradedBy(store string, k kind) {
	m.degraded.WithLabelValues(store, string(k)).Inc()
}
func (m *metrics) fetched(n int)            { m.fetchedB.Add(float64(n)) }
func (m *metrics) servedFromCache(n int)    { m.fromCache.Add(float64(n)) }
func (m *metrics) servedFromUpstream(n int) { m.fromUpstream.Add(float64(n)) }
func (m *metrics) upstream(method string, k kind, err error) {
	m.upstreamReq.WithLabelValues(method, string(k), outcome(err)).Inc()
}

// rateLimitCollector exports upstream's last ratelimit-* values at scrape time.
type rateLimitCollector struct {
	up         Upstream
	registries []string
}

var (
	rateLimitDesc = prometheus.NewDesc("hubcache_upstream_ratelimit_limit",
		"Last ratelimit-limit announced by the upstream registry.", []string{"registry"}, nil)
	rateRemainingDesc = prometheus.NewDesc("hubcache_upstream_ratelimit_remaining",
		"Last ratelimit-remaining announced by the upstream registry.", []string{"registry"}, nil)
)

func (r *rateLimitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rateLimitDesc
	ch <- rateRemainingDesc
}

func (r *rateLimitCollector) Collect(ch chan<- prometheus.Metric) {
	for _, reg := range r.registries {
		limit, remaining, ok := r.up.RateLimit(reg)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(rateLimitDesc, prometheus.GaugeValue, float64(limit), reg)
		ch <- prometheus.MustNewConstMetric(rateRemainingDesc, prometheus.GaugeValue, float64(remaining), reg)
	}
}
