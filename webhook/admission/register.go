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
		Handler: encodedPatch{h},
		LogConstructor: func(_ logr.Logger, req *admission.Request) logr.Logger {
			return admission.DefaultLogConstructor(base, req)
		},
	}
}

// prometheusRegistry is where a Handler without WithMetrics counts: private and unexposed.
func prometheusRegistry() prometheus.Registerer { return prometheus.NewRegistry() }
