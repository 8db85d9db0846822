package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"

	"github.com/hubcache/hubcache/proxy/oci"
)

// fallbackStatus are proxy answers that mean "the cache cannot answer this now": the
// request is fetched from upstream instead. They do not count against the breaker: a proxy
// that answers 503 for one uncached image while Docker Hub is down still serves every cached
// one, and the node must keep sending it those.
var fallbackStatus = map[int]bool{
	http.StatusBadGateway:         true,
	http.StatusServiceUnavailable: true,
	http.StatusGatewayTimeout:     true,
}

// forward sends the request to the proxy. served is false (with a nil error) when the
// caller should fall back to upstream: the proxy is unreachable, known to be down, or
// answered with a fallback status. Nothing has been written to w in that case.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, log *slog.Logger) (n int64, served bool, err error) {
	ok, probe := s.breaker.allow()
	if !ok {
		return 0, false, nil
	}
	u := *s.proxyURL
	u.Path = r.URL.Path
	// The proxy gets the query it needs (ns, for the mirror form) and nothing else.
	if ns := r.URL.Query().Get("ns"); ns != "" {
		u.RawQuery = url.Values{"ns": {ns}}.Encode()
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), nil)
	if err != nil {
		s.breaker.report(resultUnknown, probe, "")
		return 0, false, fmt.Errorf("building proxy request: %w", err)
	}
	copyRequestHeaders(req.Header, r.Header)
	req.Header.Set("X-Forwarded-For", clientIP(r))
	// The proxy logs the pull under the same id (oci.IncomingRequestID).
	req.Header.Set(oci.RequestIDHeader, oci.RequestID(r.Context()))

	resp, err := s.proxy.RoundTrip(req)
	if err != nil {
		if r.Context().Err() != nil {
			s.breaker.report(resultUnknown, probe, "")
			return 0, false, fmt.Errorf("client went away: %w", r.Context().Err())
		}
		reason := "connect"
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = "timeout"
		}
		s.metrics.proxyFailures.WithLabelValues(reason).Inc()
		s.noteProxy(s.breaker.report(resultUnreachable, probe, err.Error()), log, err)
		log.Info("proxy unreachable, falling back to upstream", "reason", reason, "error", err)
		return 0, false, nil
	}
	defer resp.Body.Close()
	s.noteProxy(s.breaker.report(resultReachable, probe, ""), log, nil)
	if fallbackStatus[resp.StatusCode] {
		s.metrics.proxyFailures.WithLabelValues("status").Inc()
		log.Info("proxy cannot answer, falling back to upstream", "status", resp.StatusCode)
		return 0, false, nil
	}
	n, err = relay(w, r, resp, proxyHeaderFilter(resp.Header), s.buffers)
	return n, true, err
}

// noteProxy logs and exports a change of mode.
func (s *Server) noteProxy(changed bool, log *slog.Logger, cause error) {
	if !changed {
		return
	}
	if s.breaker.state().Open {
		s.metrics.proxyReachable.Set(0)
		log.Warn("proxy unreachable: serving from upstream directly until it answers again", "proxy", s.proxyURL.String(), "error", cause)
		return
	}
	s.metrics.proxyReachable.Set(1)
	log.Warn("proxy reachable again: forwarding resumed", "proxy", s.proxyURL.String())
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
