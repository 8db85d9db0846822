package node

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Request outcomes, the values of the "outcome" label.
const (
	outcomeForwarded = "forwarded" // answered by the proxy
	outcomeFallback  = "fallback"  // answered by the upstream registry directly
	outcomeRejected  = "rejected"  // refused by validation, nothing contacted
	outcomeError     = "error"     // neither proxy nor upstream could answer
)

type metrics struct {
	requests       *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	proxyFailures  *prometheus.CounterVec
	proxyReachable prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_node_requests_total",
			Help: "Registry requests by outcome: forwarded (served by the proxy), fallback (served by upstream directly), rejected (invalid, nothing contacted), error.",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_node_response_bytes_total",
			Help: "Response body bytes sent to clients, by outcome.",
		}, []string{"outcome"}),
		proxyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_node_proxy_failures_total",
			Help: "Requests the proxy could not answer and that fell back, by reason (connect, timeout, status).",
		}, []string{"reason"}),
		proxyReachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hubcache_node_proxy_reachable",
			Help: "1 while requests are forwarded to the proxy, 0 while the node serves from upstream itself.",
		}),
	}
	m.proxyReachable.Set(1)
	for _, o := range []string{outcomeForwarded, outcomeFallback, outcomeRejected, outcomeError} {
		m.requests.WithLabelValues(o)
	}
	for _, o := range []string{outcomeForwarded, outcomeFallback} {
		m.bytes.WithLabelValues(o)
	}
	reg.MustRegister(m.requests, m.bytes, m.proxyFailures, m.proxyReachable)
	return m
}
