package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// subresourceEphemeral is the subresource through which ephemeral containers are added.
const subresourceEphemeral = "ephemeralcontainers"

// Handler answers the AdmissionReviews of one mode. It does no I/O besides logging.
type Handler struct {
	mode    Mode
	policy  rewrite.Policy
	log     *slog.Logger
	metrics *Metrics
}

// Option configures a Handler.
type Option func(*Handler)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// WithMetrics sets the collectors; the default registers on a private, unexposed registry.
func WithMetrics(m *Metrics) Option { return func(h *Handler) { h.metrics = m } }

// NewHandler returns the handler for mode, after checking the policy.
func NewHandler(mode Mode, policy rewrite.Policy, opts ...Option) (*Handler, error) {
	if mode != ModeEnabled && mode != ModeDryRun {
		return nil, fmt.Errorf("unknown webhook mode %q (want %q or %q)", mode, ModeEnabled, ModeDryRun)
	}
	if err := policy.Validate(); err != nil {
		return nil, fmt.Errorf("webhook policy: %w", err)
	}
	h := &Handler{mode: mode, policy: policy}
	for _, o := range opts {
		o(h)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.metrics == nil {
		m, err := NewMetrics(prometheusRegistry())
		if err != nil {
			return nil, err
		}
		h.metrics = m
	}
	h.log = h.log.With("mode", string(mode))
	return h, nil
}

// outcome is what one request led to, kept together for the response, metrics and log.
type outcome struct {
	resp      admission.Response
	result    string
	decisions []rewrite.Decision
	err       error
}

// Handle implements controller-runtime's admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	out := h.decide(req)
	h.metrics.observe(h.mode, out.result, out.decisions, time.Since(start))
	h.logOutcome(ctx, req, out)
	return out.resp
}

func (h *Handler) decide(req admission.Request) outcome {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		return ignored(fmt.Sprintf("hubcache: %s is not a Pod; left unchanged", kindName(req)))
	}
	ephemeral := false
	switch {
	case req.Operation == admissionv1.Create && req.SubResource == "":
	case req.Operation == admissionv1.Update && req.SubResource == subresourceEphemeral:
		ephemeral = true
	default:
		return ignored(fmt.Sprintf("hubcache: only Pod CREATE and pods/%s UPDATE are handled; %s %s left unchanged",
			subresourceEphemeral, req.Operation, resourceName(req)))
	}

	pod, err := decodePod(req.Object.Raw)
	if err != nil {
		return errored(fmt.Errorf("decoding the Pod: %w", err))
	}
	ds := rewrite.Plan(pod.Annotations, &pod.Spec, h.policy)
	if ephemeral {
		old, err := decodePod(req.OldObject.Raw)
		if err != nil {
			return errored(fmt.Errorf("decoding the Pod before the update (oldObject): %w", err))
		}
		// Existing ephemeral containers are immutable: only the ones this request adds may change.
		ds = addedEphemeral(ds, old.Spec.EphemeralContainers)
	}

	changed := changedOnly(ds)
	if len(changed) == 0 {
		return outcome{resp: admission.Allowed(""), result: resultUnchanged, decisions: ds}
	}
	audit, err := json.Marshal(changed)
	if err != nil {
		return errored(fmt.Errorf("encoding the audit annotation: %w", err))
	}
	if h.mode == ModeDryRun {
		resp := admission.Allowed("").WithWarnings(dryRunWarnings(changed)...)
		resp.AuditAnnotations = map[string]string{auditWouldRewrite: string(audit)}
		return outcome{resp: resp, result: resultWarned, decisions: ds}
	}

	resp, err := patch(pod, changed, ephemeral)
	if err != nil {
		return errored(err)
	}
	resp.AuditAnnotations = map[string]string{auditRewritten: string(audit)}
	return outcome{resp: resp, result: resultPatched, decisions: ds}
}

// decodePod reads the Pod from an AdmissionRequest object. It is lenient about fields this
// version of k8s.io/api does not know: they are never part of the patch, so they survive.
func decodePod(raw []byte) (*corev1.Pod, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, errors.New("the request carries no object")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(trimmed, &pod); err != nil {
		return nil, err
	}
	if pod.Kind != "" && pod.Kind != "Pod" {
		return nil, fmt.Errorf("the object is a %s, not a Pod", pod.Kind)
	}
	return &pod, nil
}

// addedEphemeral keeps the decisions about ephemeral containers that are not in before.
func addedEphemeral(ds []rewrite.Decision, before []corev1.EphemeralContainer) []rewrite.Decision {
	existing := make(map[string]bool, len(before))
	for _, c := range before {
		existing[c.Name] = true
	}
	var out []rewrite.Decision
	for _, d := range ds {
		if d.ContainerType == rewrite.EphemeralContainer && !existing[d.Container] {
			out = append(out, d)
		}
	}
	return out
}

func changedOnly(ds []rewrite.Decision) []rewrite.Decision {
	var out []rewrite.Decision
	for _, d := range ds {
		if d.Changed() {
			out = append(out, d)
		}
	}
	return out
}

func dryRunWarnings(changed []rewrite.Decision) []string {
	ws := make([]string, 0, len(changed))
	for _, d := range changed {
		ws = append(ws, fmt.Sprintf("hubcache dry-run: %s %q image %q would become %q",
			d.ContainerType, d.Container, d.Original, d.Rewritten))
	}
	return ws
}

func ignored(msg string) outcome {
	return outcome{resp: admission.Allowed(msg), result: resultIgnored}
}

func errored(err error) outcome {
	return outcome{resp: admission.Errored(http.StatusBadRequest, err), result: resultError, err: err}
}

func kindName(req admission.Request) string {
	if req.Kind.Kind == "" {
		return "an object of no kind"
	}
	if req.Kind.Group == "" {
		return req.Kind.Version + "/" + req.Kind.Kind
	}
	return req.Kind.Group + "/" + req.Kind.Version + "/" + req.Kind.Kind
}

func resourceName(req admission.Request) string {
	if req.SubResource == "" {
		return req.Resource.Resource
	}
	return req.Resource.Resource + "/" + req.SubResource
}

func (h *Handler) logOutcome(ctx context.Context, req admission.Request, out outcome) {
	attrs := []slog.Attr{
		slog.String("uid", string(req.UID)),
		slog.String("operation", string(req.Operation)),
		slog.String("resource", resourceName(req)),
		slog.String("namespace", req.Namespace),
		slog.String("name", req.Name),
		slog.String("result", out.result),
	}
	if req.DryRun != nil && *req.DryRun {
		attrs = append(attrs, slog.Bool("requestDryRun", true))
	}
	switch {
	case out.err != nil:
		attrs = append(attrs, slog.String("error", out.err.Error()))
		h.log.LogAttrs(ctx, slog.LevelWarn, "admission request rejected as malformed", attrs...)
	case out.result == resultPatched:
		attrs = append(attrs, slog.Any("changes", changedOnly(out.decisions)))
		h.log.LogAttrs(ctx, slog.LevelInfo, "pod images rewritten", attrs...)
	case out.result == resultWarned:
		attrs = append(attrs, slog.Any("changes", changedOnly(out.decisions)))
		h.log.LogAttrs(ctx, slog.LevelInfo, "pod images would be rewritten (dry-run)", attrs...)
	default:
		h.log.LogAttrs(ctx, slog.LevelDebug, "admission request left unchanged", attrs...)
	}
}
