package admission

import (
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// Webhooks returns the http.Handlers of both modes keyed by their path. Each bounds the
// request (Limits), decodes the AdmissionReview (a malformed one gets an error response,
// never a panic) and calls a Handler.
func Webhooks(policy rewrite.Policy, opts ...Option) (map[string]http.Handler, error) {
	out := map[string]http.Handler{}
	for _, mode := range []Mode{ModeEnabled, ModeDryRun} {
		h, err := NewHandler(mode, policy, opts...)
		if err != nil {
			return nil, err
		}
		out[mode.Path()] = bounded(h.Webhook(), h.limits)
	}
	return out, nil
}

// Register serves both modes on a controller-runtime webhook server.
func Register(srv webhook.Server, policy rewrite.Policy, opts ...Option) error {
	hooks, err := Webhooks(policy, opts...)
	if err != nil {
		return fmt.Errorf("building the webhooks: %w", err)
	}
	for path, hook := range hooks {
		srv.Register(path, hook)
	}
	return nil
}

// Webhook wraps h in controller-runtime's AdmissionReview decoding, logging through h's logger.
func (h *Handler) Webhook() *admission.Webhook {
	base := logr.FromSlogHandler(h.log.Handler())
	return &admission.Webhook{
		Handler:        encodedPatch{h},
		LogConstructor: requestLogger(base),
	}
}

// requestLogger returns a LogConstructor that logs what admission.DefaultLogConstructor
// would, the request's names and IDs included, but adds those values only when a line is
// written. controller-runtime builds the request's logger twice for every request and, for a
// good one, writes nothing with it (its lines are at V(5) or errors); adding the values to a
// JSON handler encodes them at once, which was a tenth of the handler's allocations for a
// small Pod.
func requestLogger(base logr.Logger) func(logr.Logger, *admission.Request) logr.Logger {
	return func(_ logr.Logger, req *admission.Request) logr.Logger {
		if req == nil || base.GetSink() == nil {
			return admission.DefaultLogConstructor(base, req)
		}
		return base.WithSink(&requestSink{base: base, req: req})
	}
}

// requestSink is the sink of one request's logger: base's sink, with the request's values
// added when something is logged. controller-runtime does not change the request after
// building the logger, so reading it then gives the same values.
type requestSink struct {
	base logr.Logger
	req  *admission.Request
}

// withValues is base's sink with the request's values, as DefaultLogConstructor adds them.
func (s *requestSink) withValues() logr.LogSink {
	return admission.DefaultLogConstructor(s.base, s.req).GetSink()
}

// forLine is withValues for writing a line from this sink's methods: one frame deeper, for a
// handler that records the caller.
func (s *requestSink) forLine() logr.LogSink {
	sink := s.withValues()
	if d, ok := sink.(logr.CallDepthLogSink); ok {
		return d.WithCallDepth(1)
	}
	return sink
}

// Init does nothing: base's sink was initialised when base was made.
func (s *requestSink) Init(logr.RuntimeInfo) {}

func (s *requestSink) Enabled(level int) bool { return s.base.GetSink().Enabled(level) }

func (s *requestSink) Info(level int, msg string, keysAndValues ...any) {
	s.forLine().Info(level, msg, keysAndValues...)
}

func (s *requestSink) Error(err error, msg string, keysAndValues ...any) {
	s.forLine().Error(err, msg, keysAndValues...)
}

// WithValues and WithName return base's sink with the request's values first, as
// DefaultLogConstructor's logger would have them. Neither happens on the way of a good
// request.
func (s *requestSink) WithValues(keysAndValues ...any) logr.LogSink {
	return s.withValues().WithValues(keysAndValues...)
}

func (s *requestSink) WithName(name string) logr.LogSink { return s.withValues().WithName(name) }

func (s *requestSink) WithCallDepth(depth int) logr.LogSink {
	if d, ok := s.base.GetSink().(logr.CallDepthLogSink); ok {
		return &requestSink{base: s.base.WithSink(d.WithCallDepth(depth)), req: s.req}
	}
	return s
}

// prometheusRegistry is where a Handler without WithMetrics counts: private and unexposed.
func prometheusRegistry() prometheus.Registerer { return prometheus.NewRegistry() }
