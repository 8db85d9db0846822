package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newMetricsRegistry is the registry every component serves on /metrics: Go runtime and
// process metrics, and hubcache_build_info naming the component and the build.
func newMetricsRegistry(component string) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	b := buildInfo()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hubcache_build_info",
		Help: "Always 1; the labels say which build of which component runs.",
		ConstLabels: prometheus.Labels{
			"component": component, "version": b.Version, "commit": b.Commit,
			"date": b.Date, "goversion": b.GoVersion, "platform": b.Platform,
		},
	})
	info.Set(1)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return reg, nil
}
