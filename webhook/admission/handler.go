package admission

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// subresourceEphemeral is the subresource through which ephemeral containers are added.
const subresourceEphemeral = "ephemeralcontainers"

// Handler answers the AdmissionReviews of one mode. Its only I/O besides logging is the
// visibility question for a Pod with imagePullSecrets, when a Visibility is configured.
type Handler struct {
	mode       Mode
	planner    *rewrite.Planner
	limits     Limits
	visibility Visibility
	log        *slog.Logger
	metrics    *Metrics
}

// Visibility answers which Docker Hub repositories the cache serves. A repository missing
// from the answer is unknown; the error is for the log.
type Visibility interface {
	Lookup(ctx context.Context, repositories []string) (map[string]rewrite.RepositoryVisibility, error)
}

// WithVisibility makes the handler ask v about the repositories of Pods with
// imagePullSecrets, and rewrite their images only when the cache serves them. Without it
// such Pods are rewritten like any other, with reason visibility-unchecked.
func WithVisibility(v Visibility) Option { return func(h *Handler) { h.visibility = v } }

// Option configures a Handler.
type Option func(*Handler)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// WithMetrics sets the collectors; the default registers on a private, unexposed registry.
func WithMetrics(m *Metrics) Option { return func(h *Handler) { h.metrics = m } }

// NewHandler returns the handler for mode, after checking the policy and the limits.
func NewHandler(mode Mode, policy rewrite.Policy, opts ...Option) (*Handler, error) {
	if mode != ModeEnabled && mode != ModeDryRun {
		return nil, fmt.Errorf("unknown webhook mode %q (want %q or %q)", mode, ModeEnabled, ModeDryRun)
	}
	if err := policy.Validate(); err != nil {
		return nil, fmt.Errorf("webhook policy: %w", err)
	}
	h := &Handler{mode: mode, planner: rewrite.NewPlanner(policy), limits: DefaultLimits()}
	for _, o := range opts {
		o(h)
	}
	if err := h.limits.Validate(); err != nil {
		return nil, fmt.Errorf("webhook limits: %w", err)
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
	changed   []change
	err       error
	// lookupErr is why the visibility question got no answer, for the log.
	lookupErr error
}

// Handle implements controller-runtime's admission.Handler.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	out := h.decide(ctx, req)
	h.metrics.observe(h.mode, out.result, out.decisions, time.Since(start))
	h.logOutcome(ctx, req, out)
	return out.resp
}

func (h *Handler) decide(ctx context.Context, req admission.Request) outcome {
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

	// A Pod hubcache cannot read is the API server's to judge, not ours: it is admitted
	// unchanged, as it would be after a timeout (fail open).
	pod, err := decodePod(req.Object.Raw)
	if err != nil {
		return failedOpen(fmt.Errorf("decoding the Pod: %w", err))
	}
	ds, lookupErr := h.plan(ctx, pod)
	all := indexed(ds)
	if ephemeral {
		old, err := decodePod(req.OldObject.Raw)
		if err != nil {
			return failedOpen(fmt.Errorf("decoding the Pod before the update (oldObject): %w", err))
		}
		// Existing ephemeral containers are immutable: only the ones this request adds may change.
		all = addedEphemeral(all, old.spec.EphemeralContainers)
		ds = decisionsOf(all)
	}

	changed := changedOnly(all)
	kept := keptPrivate(all)
	keptWarnings := keptWarnings(kept)
	if len(changed) == 0 {
		resp := admission.Allowed("").WithWarnings(h.capWarnings(keptWarnings)...)
		resp.AuditAnnotations = h.keptAudit(kept, nil)
		return outcome{resp: resp, result: resultUnchanged, decisions: ds, lookupErr: lookupErr}
	}
	audit := h.auditValue(changed)
	if h.mode == ModeDryRun {
		ws := append(rewriteWarnings("hubcache dry-run", "would become", changed), keptWarnings...)
		resp := admission.Allowed("").WithWarnings(h.capWarnings(ws)...)
		resp.AuditAnnotations = h.keptAudit(kept, map[string]string{auditWouldRewrite: audit})
		return outcome{resp: resp, result: resultWarned, decisions: ds, changed: changed, lookupErr: lookupErr}
	}

	ops, warnings, err := patchOps(pod, changed, ephemeral, h.limits.MaxAnnotationBytes)
	if err != nil {
		return failedOpen(fmt.Errorf("%d images not rewritten: %w", len(changed), err))
	}
	if err := ctx.Err(); err != nil {
		// The API server has given up or is about to; an answer it may still read must not
		// depend on work cut short.
		return failedOpen(fmt.Errorf("deciding took longer than the request deadline: %w", err))
	}
	if ephemeral {
		// Through the ephemeralcontainers subresource the API server drops metadata changes,
		// so the originals are reported in warnings and the audit annotation instead.
		warnings = append(warnings, rewriteWarnings("hubcache", "rewritten to", changed)...)
	}
	resp := admission.Patched("", ops...).WithWarnings(h.capWarnings(append(warnings, keptWarnings...))...)
	resp.AuditAnnotations = h.keptAudit(kept, map[string]string{auditRewritten: audit})
	return outcome{resp: resp, result: resultPatched, decisions: ds, changed: changed, lookupErr: lookupErr}
}

// plan runs the rewrite plan, first asking the cache about the repositories of a Pod with
// imagePullSecrets when a Visibility is configured. The question has its own budget, well
// under the request deadline, so a slow cache leaves the images alone instead of timing out.
func (h *Handler) plan(ctx context.Context, pod *podView) ([]rewrite.Decision, error) {
	if h.visibility == nil {
		return h.planner.Plan(pod.annotations(), &pod.spec), nil
	}
	questions := h.planner.VisibilityQuestions(pod.annotations(), &pod.spec)
	v := rewrite.Visibilities{Checked: true}
	var err error
	if len(questions) > 0 {
		lookupCtx, cancel := context.WithTimeout(ctx, h.limits.VisibilityBudget)
		start := time.Now()
		v.Answers, err = h.visibility.Lookup(lookupCtx, questions)
		cancel()
		h.metrics.observeLookup(err, time.Since(start))
	}
	return h.planner.PlanWith(pod.annotations(), &pod.spec, v), err
}

// keptPrivate returns the decisions that left an image alone because of its visibility.
func keptPrivate(cs []change) []change {
	var out []change
	for _, c := range cs {
		if c.Reason == rewrite.ReasonPrivate || c.Reason == rewrite.ReasonVisibilityUnknown {
			out = append(out, c)
		}
	}
	return out
}

func keptWarnings(kept []change) []string {
	ws := make([]string, 0, len(kept))
	for _, c := range kept {
		ws = append(ws, fmt.Sprintf("hubcache: %s %q image %q left unchanged: %s (%s)",
			c.ContainerType, c.Container, c.Original, c.Reason, c.Detail))
	}
	return ws
}

// keptAudit adds the kept decisions to the audit annotations, when there are any.
func (h *Handler) keptAudit(kept []change, audit map[string]string) map[string]string {
	if len(kept) == 0 {
		return audit
	}
	if audit == nil {
		audit = map[string]string{}
	}
	audit[auditKept] = h.auditValue(kept)
	return audit
}

// addedEphemeral keeps the decisions about ephemeral containers that are not in before.
func addedEphemeral(cs []change, before []corev1.EphemeralContainer) []change {
	existing := make(map[string]bool, len(before))
	for _, c := range before {
		existing[c.Name] = true
	}
	var out []change
	for _, c := range cs {
		if c.ContainerType == rewrite.EphemeralContainer && !existing[c.Container] {
			out = append(out, c)
		}
	}
	return out
}

func changedOnly(cs []change) []change {
	n := 0
	for _, c := range cs {
		if c.Changed() {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	// Allocated once: a Pod may have tens of thousands of containers.
	out := make([]change, 0, n)
	for _, c := range cs {
		if c.Changed() {
			out = append(out, c)
		}
	}
	return out
}

func decisionsOf(cs []change) []rewrite.Decision {
	out := make([]rewrite.Decision, len(cs))
	for i, c := range cs {
		out[i] = c.Decision
	}
	return out
}

func rewriteWarnings(prefix, verb string, changed []change) []string {
	ws := make([]string, 0, len(changed))
	for _, c := range changed {
		ws = append(ws, fmt.Sprintf("%s: %s %q image %q %s %q",
			prefix, c.ContainerType, c.Container, c.Original, verb, c.Rewritten))
	}
	return ws
}

// capWarnings keeps at most MaxWarnings warnings, the last saying how many were left out.
func (h *Handler) capWarnings(ws []string) []string {
	max := h.limits.MaxWarnings
	if len(ws) <= max {
		return ws
	}
	out := append([]string{}, ws[:max-1]...)
	return append(out, fmt.Sprintf("hubcache: %d more warnings not shown", len(ws)-(max-1)))
}

// auditValue is the audit annotation: the first MaxListedDecisions changes as a JSON array,
// and, when some were left out, a last element saying how many. It is encoding/json's
// encoding of the decisions (and of {"omitted": N}), written directly: it was a tenth of the
// handler's own work.
func (h *Handler) auditValue(changed []change) string {
	// Sized for the listed decisions' strings and the JSON around them, so it is allocated once.
	n := 32
	for _, c := range changed[:min(len(changed), h.limits.MaxListedDecisions)] {
		d := c.Decision
		n += 96 + len(d.Container) + len(d.ContainerType) + len(d.Original) + len(d.Rewritten) + len(d.Reason) + len(d.Detail)
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, c := range changed {
		if i > 0 {
			b = append(b, ',')
		}
		if i == h.limits.MaxListedDecisions {
			b = append(b, `{"omitted":`...)
			b = strconv.AppendInt(b, int64(len(changed)-i), 10)
			b = append(b, '}')
			break
		}
		b = appendDecision(b, c.Decision)
	}
	return string(append(b, ']'))
}

// appendDecision appends d as encoding/json marshals a rewrite.Decision.
func appendDecision(b []byte, d rewrite.Decision) []byte {
	b = append(b, `{"container":`...)
	b = appendJSONString(b, d.Container)
	b = append(b, `,"containerType":`...)
	b = appendJSONString(b, string(d.ContainerType))
	b = append(b, `,"original":`...)
	b = appendJSONString(b, d.Original)
	b = append(b, `,"rewritten":`...)
	b = appendJSONString(b, d.Rewritten)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, string(d.Reason))
	if d.Detail != "" {
		b = append(b, `,"detail":`...)
		b = appendJSONString(b, d.Detail)
	}
	return append(b, '}')
}

func failedOpen(err error) outcome {
	resp := admission.Allowed("").WithWarnings(fmt.Sprintf("hubcache: Pod left unchanged: %v", err))
	return outcome{resp: resp, result: resultFailedOpen, err: err}
}

func ignored(msg string) outcome {
	return outcome{resp: admission.Allowed(msg), result: resultIgnored}
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
	if out.lookupErr != nil {
		attrs = append(attrs, slog.String("visibilityError", out.lookupErr.Error()))
	}
	switch {
	case out.err != nil:
		attrs = append(attrs, slog.String("error", out.err.Error()))
		h.log.LogAttrs(ctx, slog.LevelWarn, "pod admitted unchanged (fail open)", attrs...)
	case out.result == resultPatched:
		attrs = append(attrs, h.listed(out.changed)...)
		h.log.LogAttrs(ctx, slog.LevelInfo, "pod images rewritten", attrs...)
	case out.result == resultWarned:
		attrs = append(attrs, h.listed(out.changed)...)
		h.log.LogAttrs(ctx, slog.LevelInfo, "pod images would be rewritten (dry-run)", attrs...)
	default:
		h.log.LogAttrs(ctx, slog.LevelDebug, "admission request left unchanged", attrs...)
	}
}

// listed is the changes of a log line: at most MaxListedDecisions, and how many in all.
func (h *Handler) listed(changed []change) []slog.Attr {
	n := min(len(changed), h.limits.MaxListedDecisions)
	return []slog.Attr{
		slog.Any("changes", decisionsOf(changed[:n])),
		slog.Int("changeCount", len(changed)),
	}
}
