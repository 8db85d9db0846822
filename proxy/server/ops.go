package server

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// probeHex is a digest nobody stores (64 zeros), used by the readiness check.
const probeHex = "0000000000000000000000000000000000000000000000000000000000000000"

// readyTimeout bounds one readiness check.
const readyTimeout = 5 * time.Second

func newOpsHandler(reg *prometheus.Registry, checks func(context.Context) []check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// /readyz stays 200 while a store is down: the proxy then serves in a degraded mode
	// (passes blobs through, confirms digests upstream), and taking every replica out of the
	// Service at once would help nobody. The detail says which store failed; so does
	// hubcache_store_up.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		body := map[string]string{"status": "ready"}
		for _, c := range checks(ctx) {
			body[c.name] = "ok"
			if c.err != nil {
				body["status"], body[c.name] = "degraded", "error: "+c.err.Error()
			}
		}
		writeJSON(w, http.StatusOK, body)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
