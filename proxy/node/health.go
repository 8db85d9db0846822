package node

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves /healthz, /readyz and /metrics (from gatherer, usually the registry
// the Server's metrics were registered with).
//
// Ready means the node can serve pulls: its listener is up. The proxy being unreachable is
// reported as detail but does not make the node unready, because the fallback still serves;
// an unready node-local entry point would only stop nothing and alarm everyone.
func (s *Server) AdminHandler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	return mux
}

type readiness struct {
	Ready    bool   `json:"ready"`
	Listener string `json:"listener"`
	// Mode is "forwarding" (to the proxy) or "fallback" (straight to upstream).
	Mode       string    `json:"mode"`
	ModeSince  time.Time `json:"modeSince"`
	Proxy      string    `json:"proxy"`
	ProxyError string    `json:"proxyLastError,omitempty"`
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	st := s.breaker.state()
	rd := readiness{
		Ready:      s.listening.Load(),
		Listener:   "down",
		Mode:       "forwarding",
		ModeSince:  st.Since.UTC(),
		Proxy:      s.proxyURL.String(),
		ProxyError: st.LastErr,
	}
	if rd.Ready {
		rd.Listener = "up"
	}
	if st.Open {
		rd.Mode = "fallback"
	}
	w.Header().Set("Content-Type", "application/json")
	if !rd.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rd)
}
