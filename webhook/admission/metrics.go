package admission

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// Metrics are the webhook's Prometheus collectors. They are registered on the registerer the
// caller owns, never on a global one.
type Metrics struct {
	decisions *prometheus.CounterVec
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	lookups   *prometheus.HistogramVec
}

// Request results, the "result" label of hubcache_webhook_admission_requests_total.
const (
	resultPatched    = "patched"
	resultWarned     = "warned"
	resultUnchanged  = "unchanged"
	resultIgnored    = "ignored"
	resultFailedOpen = "failed-open"
)

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_webhook_rewrites_total",
			Help: "Image decisions made at admission, by mode and outcome (the decision's reason; " +
				"\"rewritten\" in mode dry-run counts would-be rewrites).",
		}, []string{"mode", "outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_webhook_admission_requests_total",
			Help: "Admission requests handled, by mode and result (patched, warned, unchanged, ignored, failed-open).",
		}, []string{"mode", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hubcache_webhook_admission_duration_seconds",
			Help:    "Time spent deciding one admission request, by mode.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"mode"}),
	}
	m.lookups = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "hubcache_webhook_visibility_lookup_duration_seconds",
		Help: "Time spent asking the cache about the repositories of a Pod with imagePullSecrets " +
			"(cached answers included), by result (ok, error).",
		Buckets: []float64{0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
	}, []string{"result"})
	for _, c := range []prometheus.Collector{m.decisions, m.requests, m.latency, m.lookups} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering webhook metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) observe(mode Mode, result string, ds []rewrite.Decision, took time.Duration) {
	// Counted per reason first: one label lookup per reason, not per container.
	counts := map[rewrite.Reason]int{}
	for _, d := range ds {
		counts[d.Reason]++
	}
	for reason, n := range counts {
		m.decisions.WithLabelValues(string(mode), string(reason)).Add(float64(n))
	}
	m.requests.WithLabelValues(string(mode), result).Inc()
	m.latency.WithLabelValues(string(mode)).Observe(took.Seconds())
}

func (m *Metrics) observeLookup(err error, took time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.lookups.WithLabelValues(result).Observe(took.Seconds())
}
