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

func newOpsHandler(reg *prometheus.Registry, checks func(context.Context) []check, ready *readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// /readyz stays 200 ("degraded") while a store has failed for less than the grace period
	// (WithUnreadyAfter): the proxy then serves in a degraded mode (passes blobs through,
	// confirms digests upstream), and taking every replica out of the Service for a blip
	// would help nobody. A store failing for longer answers 503 ("unready"): a broken install
	// or a long outage shows in `kubectl get pods` and in alerts, and nodes fetch from
	// upstream themselves. After Drain it answers 503 ("draining"). The detail says which
	// store failed; so does hubcache_store_up.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		body := map[string]string{}
		cs := checks(ctx)
		for _, c := range cs {
			body[c.name] = "ok"
			if c.err != nil {
				body[c.name] = "error: " + c.err.Error()
			}
		}
		status, code := ready.verdict(cs)
		body["status"] = status
		writeJSON(w, code, body)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
