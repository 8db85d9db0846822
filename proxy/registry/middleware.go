package registry

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/hubcache/hubcache/proxy/oci"
	"github.com/prometheus/client_golang/prometheus"
)

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hubcache_http_requests_total",
			Help: "Registry API requests by route, method (GET, HEAD or other) and status code (aborted streams count as code \"aborted\").",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hubcache_http_request_duration_seconds",
			Help:    "Time to complete registry API requests, body included, by route and method.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"route", "method"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type ctxKey int

const (
	infoKey ctxKey = iota
	loggerKey
)

// requestInfo is filled in by the handler and read by the middleware after it returns.
type requestInfo struct {
	route   oci.Route
	aborted bool
}

func setRoute(ctx context.Context, r oci.Route) {
	if info, ok := ctx.Value(infoKey).(*requestInfo); ok {
		info.route = r
	}
}

func setAborted(ctx context.Context) {
	if info, ok := ctx.Value(infoKey).(*requestInfo); ok {
		info.aborted = true
	}
}

// loggerFrom returns the request's logger (with its method and path), or fallback.
func loggerFrom(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return fallback
}

// recorder remembers the status and body size; Unwrap lets http.ResponseController reach
// the real writer's Flush.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom lets a stored file reach the connection's ReadFrom (sendfile) through the
// recorder.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := io.Copy(r.ResponseWriter, src)
	r.bytes += n
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument logs every request as one structured line and counts it. An aborted stream
// (panic(http.ErrAbortHandler)) is logged and counted, then the panic goes on to net/http,
// which resets the connection.
func instrument(next http.Handler, log *slog.Logger, m *httpMetrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{route: oci.RouteNotFound}
		id := oci.IncomingRequestID(r)
		w.Header().Set(oci.RequestIDHeader, id)
		reqLog := log.With("request_id", id, "method", r.Method, "path", r.URL.EscapedPath())
		ctx := oci.WithRequestID(r.Context(), id)
		ctx = context.WithValue(ctx, infoKey, info)
		ctx = context.WithValue(ctx, loggerKey, reqLog)
		rec := &recorder{ResponseWriter: w}

		done := func() {
			code := strconv.Itoa(rec.status)
			if rec.status == 0 {
				code = "none"
			}
			if info.aborted {
				code = "aborted"
			}
			elapsed := time.Since(start)
			method := oci.MethodLabel(r.Method)
			m.requests.WithLabelValues(string(info.route), method, code).Inc()
			m.duration.WithLabelValues(string(info.route), method).Observe(elapsed.Seconds())
			reqLog.Info("request",
				"route", string(info.route), "status", code, "bytes", rec.bytes,
				"duration_ms", elapsed.Milliseconds(), "remote", r.RemoteAddr,
				"user_agent", r.UserAgent())
		}
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					reqLog.Error("handler panic", "panic", p)
				}
				info.aborted = true
				done()
				panic(p)
			}
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
		done()
	})
}
