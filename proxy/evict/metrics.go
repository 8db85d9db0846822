package evict

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/metadata"
)

// metrics are the evictor's Prometheus series.
type metrics struct {
	objects *prometheus.CounterVec
	bytes   prometheus.Counter
	current prometheus.Gauge
	runs    *prometheus.CounterVec
	errors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, maxSize int64) (*metrics, error) {
	m := &metrics{
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_evicted_objects_total",
			Help: "Objects removed by eviction, by kind (manifest, blob).",
		}, []string{"kind"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubcache_evicted_bytes_total",
			Help: "Bytes removed by eviction.",
		}),
		current: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hubcache_cache_size_bytes",
			Help: "Recorded size of all cached objects, as measured by the last eviction pass.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_eviction_runs_total",
			Help: "Eviction passes, by result (ok, over_budget, skipped, error).",
		}, []string{"result"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hubcache_eviction_errors_total",
			Help: "Eviction passes that failed or had objects they could not evict.",
		}),
	}
	budget := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hubcache_cache_max_size_bytes",
		Help: "Size budget of the cache (--max-size).",
	})
	budget.Set(float64(maxSize))
	for _, k := range []metadata.Kind{metadata.KindManifest, metadata.KindBlob} {
		m.objects.WithLabelValues(string(k))
	}
	for _, r := range []string{"ok", "over_budget", "skipped", "error"} {
		m.runs.WithLabelValues(r)
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.objects, m.bytes, m.current, m.runs, m.errors, budget} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

func (m *metrics) evicted(c metadata.Candidate) {
	m.objects.WithLabelValues(string(c.Kind)).Inc()
	m.bytes.Add(float64(c.Size))
}

func (m *metrics) size(n int64) { m.current.Set(float64(n)) }

func (m *metrics) observe(res Result, err error) {
	switch {
	case err != nil:
		m.runs.WithLabelValues("error").Inc()
		m.errors.Inc()
	case res.Skipped:
		m.runs.WithLabelValues("skipped").Inc()
	case res.OverBudget:
		m.runs.WithLabelValues("over_budget").Inc()
	default:
		m.runs.WithLabelValues("ok").Inc()
	}
}
