package admission

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

var podKind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

func newPod(annotations map[string]string, containers, inits []corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "apps", Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: containers, InitContainers: inits},
	}
}

func raw(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func createRequest(t testing.TB, pod any) admission.Request {
	t.Helper()
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u1", Kind: podKind, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "apps", Name: "p", Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: raw(t, pod)},
	}}
}

func handler(t *testing.T, mode Mode, opts ...Option) *Handler {
	t.Helper()
	h, err := NewHandler(mode, rewrite.Policy{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// applyPatch applies the response's JSONPatch to the request object, as the API server does.
func applyPatch(t *testing.T, original []byte, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patches) == 0 {
		return original
	}
	p, err := jsonpatch.DecodePatch(raw(t, resp.Patches))
	if err != nil {
		t.Fatalf("decoding the patch: %v", err)
	}
	out, err := p.Apply(original)
	if err != nil {
		t.Fatalf("applying the patch %s: %v", raw(t, resp.Patches), err)
	}
	return out
}

func decode(t *testing.T, b []byte) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func originals(t *testing.T, p *corev1.Pod) map[string]string {
	t.Helper()
	v, ok := p.Annotations[rewrite.AnnotationOriginalImages]
	if !ok {
		return nil
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		t.Fatalf("annotation %s = %q: %v", rewrite.AnnotationOriginalImages, v, err)
	}
	return m
}

func TestEnabledMode(t *testing.T) {
	const digest = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
	tests := []struct {
		name          string
		pod           *corev1.Pod
		wantImages    []string // containers then init containers, after admission
		wantOriginals map[string]string
	}{
		{
			name: "containers and init containers from Docker Hub are rewritten and recorded",
			pod: newPod(nil,
				[]corev1.Container{{Name: "app", Image: "nginx:1.27"}, {Name: "pinned", Image: "bitnami/redis@" + digest}},
				[]corev1.Container{{Name: "setup", Image: "docker.io/library/busybox"}}),
			wantImages: []string{
				"127.0.0.1:5000/docker.io/library/nginx:1.27",
				"127.0.0.1:5000/docker.io/bitnami/redis@" + digest,
				"127.0.0.1:5000/docker.io/library/busybox:latest",
			},
			wantOriginals: map[string]string{"app": "nginx:1.27", "pinned": "bitnami/redis@" + digest, "setup": "docker.io/library/busybox"},
		},
		{
			name:          "a tag and a digest are both kept",
			pod:           newPod(nil, []corev1.Container{{Name: "app", Image: "nginx:1.27@" + digest}}, nil),
			wantImages:    []string{"127.0.0.1:5000/docker.io/library/nginx:1.27@" + digest},
			wantOriginals: map[string]string{"app": "nginx:1.27@" + digest},
		},
		{
			name: "other registries are left alone and only Docker Hub images are recorded",
			pod: newPod(nil, []corev1.Container{
				{Name: "k8s", Image: "registry.k8s.io/pause:3.10"},
				{Name: "app", Image: "nginx"},
			}, nil),
			wantImages:    []string{"registry.k8s.io/pause:3.10", "127.0.0.1:5000/docker.io/library/nginx:latest"},
			wantOriginals: map[string]string{"app": "nginx"},
		},
		{
			name: "an existing original-images annotation is merged, not replaced",
			pod: newPod(map[string]string{rewrite.AnnotationOriginalImages: `{"old":"redis:7"}`},
				[]corev1.Container{{Name: "old", Image: "127.0.0.1:5000/docker.io/library/redis:7"}, {Name: "app", Image: "nginx"}}, nil),
			wantImages:    []string{"127.0.0.1:5000/docker.io/library/redis:7", "127.0.0.1:5000/docker.io/library/nginx:latest"},
			wantOriginals: map[string]string{"old": "redis:7", "app": "nginx"},
		},
		{
			name: "an original-images annotation that is not JSON is replaced",
			pod: newPod(map[string]string{rewrite.AnnotationOriginalImages: `not json`},
				[]corev1.Container{{Name: "app", Image: "nginx"}}, nil),
			wantImages:    []string{"127.0.0.1:5000/docker.io/library/nginx:latest"},
			wantOriginals: map[string]string{"app": "nginx"},
		},
		{
			name: "a pod annotated hubcache.io/skip keeps every image",
			pod: newPod(map[string]string{rewrite.AnnotationSkip: "true"},
				[]corev1.Container{{Name: "app", Image: "nginx"}}, nil),
			wantImages: []string{"nginx"},
		},
		{
			name:       "a pod without containers is allowed unchanged",
			pod:        newPod(nil, nil, nil),
			wantImages: nil,
		},
		{
			name:       "an invalid reference is left for the API server to reject",
			pod:        newPod(nil, []corev1.Container{{Name: "app", Image: "NGINX::bad"}}, nil),
			wantImages: []string{"NGINX::bad"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := handler(t, ModeEnabled)
			req := createRequest(t, tt.pod)
			resp := h.Handle(context.Background(), req)
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			after := decode(t, applyPatch(t, req.Object.Raw, resp))
			var images []string
			for _, c := range append(after.Spec.Containers, after.Spec.InitContainers...) {
				images = append(images, c.Image)
			}
			if !slices.Equal(images, tt.wantImages) {
				t.Errorf("images = %q, want %q", images, tt.wantImages)
			}
			got := originals(t, after)
			if tt.wantOriginals == nil {
				if len(resp.Patches) != 0 {
					t.Errorf("nothing to rewrite but got a patch %s", raw(t, resp.Patches))
				}
			} else if !equalMaps(got, tt.wantOriginals) {
				t.Errorf("original images = %v, want %v", got, tt.wantOriginals)
			}

			// Reinvocation: the admitted pod goes through again and nothing changes.
			again := h.Handle(context.Background(), admission.Request{AdmissionRequest: func() admissionv1.AdmissionRequest {
				r := req.AdmissionRequest
				r.Object = runtime.RawExtension{Raw: raw(t, after)}
				return r
			}()})
			if !again.Allowed || len(again.Patches) != 0 {
				t.Errorf("reinvocation changed the pod again: allowed=%v patch=%s", again.Allowed, raw(t, again.Patches))
			}
		})
	}
}

func TestThePatchKeepsFieldsUnknownToThisAPIVersion(t *testing.T) {
	obj := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","futureMeta":{"a":1}},
		"spec":{"futureField":"keep me","containers":[{"name":"app","image":"nginx","futureContainerField":[1,2]}]},
		"status":{"futurePhase":"x"}}`)
	req := createRequest(t, json.RawMessage(obj))
	resp := handler(t, ModeEnabled).Handle(context.Background(), req)
	for _, op := range resp.Patches {
		if op.Operation == "remove" {
			t.Errorf("the patch removes %s", op.Path)
		}
	}
	out := applyPatch(t, obj, resp)
	for _, want := range []string{`"futureField":"keep me"`, `"futureContainerField":[1,2]`, `"futureMeta":{"a":1}`, `"futurePhase":"x"`,
		`"image":"127.0.0.1:5000/docker.io/library/nginx:latest"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("patched pod %s lacks %s", out, want)
		}
	}
}

func TestDryRunModeWarnsAndChangesNothing(t *testing.T) {
	pod := newPod(nil,
		[]corev1.Container{{Name: "app", Image: "nginx:1.27"}, {Name: "quay", Image: "quay.io/x/y:1"}},
		[]corev1.Container{{Name: "setup", Image: "busybox"}})
	resp := handler(t, ModeDryRun).Handle(context.Background(), createRequest(t, pod))
	if !resp.Allowed || len(resp.Patches) != 0 || resp.PatchType != nil {
		t.Fatalf("dry-run must allow without a patch: allowed=%v patches=%v", resp.Allowed, resp.Patches)
	}
	want := []string{
		`hubcache dry-run: container "app" image "nginx:1.27" would become "127.0.0.1:5000/docker.io/library/nginx:1.27"`,
		`hubcache dry-run: initContainer "setup" image "busybox" would become "127.0.0.1:5000/docker.io/library/busybox:latest"`,
	}
	if !slices.Equal(resp.Warnings, want) {
		t.Errorf("warnings =\n%q\nwant\n%q", resp.Warnings, want)
	}
	var audit []rewrite.Decision
	if err := json.Unmarshal([]byte(resp.AuditAnnotations[auditWouldRewrite]), &audit); err != nil || len(audit) != 2 {
		t.Errorf("audit annotation %q: %v, want the 2 would-be rewrites", resp.AuditAnnotations[auditWouldRewrite], err)
	}
}

func TestEphemeralContainersSubresource(t *testing.T) {
	old := newPod(nil, []corev1.Container{{Name: "app", Image: "nginx"}}, nil)
	old.Spec.EphemeralContainers = []corev1.EphemeralContainer{
		{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "earlier", Image: "busybox"}},
	}
	updated := old.DeepCopy()
	updated.Spec.EphemeralContainers = append(updated.Spec.EphemeralContainers,
		corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "alpine:3"}})
	req := createRequest(t, updated)
	req.Operation = admissionv1.Update
	req.SubResource = "ephemeralcontainers"
	req.OldObject = runtime.RawExtension{Raw: raw(t, old)}

	t.Run("enabled rewrites only the added ephemeral container and leaves the annotations", func(t *testing.T) {
		resp := handler(t, ModeEnabled).Handle(context.Background(), req)
		after := decode(t, applyPatch(t, req.Object.Raw, resp))
		if got := after.Spec.EphemeralContainers[1].Image; got != "127.0.0.1:5000/docker.io/library/alpine:3" {
			t.Errorf("added ephemeral container image = %q", got)
		}
		if got := after.Spec.EphemeralContainers[0].Image; got != "busybox" {
			t.Errorf("existing ephemeral container (immutable) changed to %q", got)
		}
		if got := after.Spec.Containers[0].Image; got != "nginx" {
			t.Errorf("a regular container changed through the subresource: %q", got)
		}
		if after.Annotations != nil {
			t.Errorf("annotations changed through the subresource: %v", after.Annotations)
		}
		if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `"debugger"`) {
			t.Errorf("warnings = %q, want one naming the debugger container", resp.Warnings)
		}
	})
	t.Run("dry-run warns about the added ephemeral container only", func(t *testing.T) {
		resp := handler(t, ModeDryRun).Handle(context.Background(), req)
		if len(resp.Patches) != 0 || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `ephemeralContainer "debugger"`) {
			t.Errorf("patches=%v warnings=%q", resp.Patches, resp.Warnings)
		}
	})
	t.Run("a missing old object admits the Pod unchanged with a warning", func(t *testing.T) {
		r := req
		r.OldObject = runtime.RawExtension{}
		resp := handler(t, ModeEnabled).Handle(context.Background(), r)
		if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Warnings) != 1 ||
			!strings.Contains(resp.Warnings[0], "oldObject") {
			t.Errorf("got allowed=%v patches=%v warnings=%q, want allowed unchanged with a warning", resp.Allowed, resp.Patches, resp.Warnings)
		}
	})
}

func TestRequestsTheWebhookDoesNotHandle(t *testing.T) {
	pod := newPod(nil, []corev1.Container{{Name: "app", Image: "nginx"}}, nil)
	tests := []struct {
		name        string
		edit        func(*admission.Request)
		wantAllowed bool
		wantMessage string
		wantWarning string
	}{
		{
			name: "a Deployment is allowed unchanged with a message",
			edit: func(r *admission.Request) {
				r.Kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
			},
			wantAllowed: true, wantMessage: "apps/v1/Deployment is not a Pod",
		},
		{
			name:        "a request with no kind is allowed unchanged with a message",
			edit:        func(r *admission.Request) { r.Kind = metav1.GroupVersionKind{} },
			wantAllowed: true, wantMessage: "not a Pod",
		},
		{
			name:        "a plain Pod UPDATE is allowed unchanged with a message",
			edit:        func(r *admission.Request) { r.Operation = admissionv1.Update },
			wantAllowed: true, wantMessage: "UPDATE pods left unchanged",
		},
		{
			name:        "a Pod DELETE is allowed unchanged",
			edit:        func(r *admission.Request) { r.Operation = admissionv1.Delete; r.Object = runtime.RawExtension{} },
			wantAllowed: true, wantMessage: "DELETE pods left unchanged",
		},
		{
			name:        "a CREATE without an object is admitted unchanged with a warning",
			edit:        func(r *admission.Request) { r.Object = runtime.RawExtension{} },
			wantAllowed: true, wantWarning: "carries no object",
		},
		{
			name:        "a CREATE whose object is null is admitted unchanged with a warning",
			edit:        func(r *admission.Request) { r.Object = runtime.RawExtension{Raw: []byte("null")} },
			wantAllowed: true, wantWarning: "carries no object",
		},
		{
			name:        "an object that is not JSON is admitted unchanged with a warning",
			edit:        func(r *admission.Request) { r.Object = runtime.RawExtension{Raw: []byte(`{"spec":`)} },
			wantAllowed: true, wantWarning: "decoding the Pod",
		},
		{
			name: "containers of the wrong JSON type are admitted unchanged with a warning",
			edit: func(r *admission.Request) {
				r.Object = runtime.RawExtension{Raw: []byte(`{"spec":{"containers":{"a":1}}}`)}
			},
			wantAllowed: true, wantWarning: "decoding the Pod",
		},
		{
			name: "an object that says it is a Service is admitted unchanged with a warning",
			edit: func(r *admission.Request) {
				r.Object = runtime.RawExtension{Raw: []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`)}
			},
			wantAllowed: true, wantWarning: "is a Service, not a Pod",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, mode := range []Mode{ModeEnabled, ModeDryRun} {
				req := createRequest(t, pod)
				tt.edit(&req)
				resp := handler(t, mode).Handle(context.Background(), req)
				if resp.Allowed != tt.wantAllowed || len(resp.Patches) != 0 {
					t.Errorf("%s: allowed=%v patches=%v, want allowed=%v and no patch", mode, resp.Allowed, resp.Patches, tt.wantAllowed)
				}
				if tt.wantWarning != "" {
					if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tt.wantWarning) {
						t.Errorf("%s: warnings %q, want one containing %q", mode, resp.Warnings, tt.wantWarning)
					}
					continue
				}
				if resp.Result == nil || !strings.Contains(resp.Result.Message, tt.wantMessage) {
					t.Errorf("%s: result %+v, want a message containing %q", mode, resp.Result, tt.wantMessage)
				}
			}
		})
	}
}

func TestNewHandlerRejectsABadPolicyOrMode(t *testing.T) {
	if _, err := NewHandler("sometimes", rewrite.Policy{}); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := NewHandler(ModeEnabled, rewrite.Policy{Target: "docker.io"}); err == nil {
		t.Error("Docker Hub itself accepted as the target")
	}
	if _, err := NewHandler(ModeEnabled, rewrite.Policy{Exclude: []string{"["}}); err == nil {
		t.Error("malformed exclude pattern accepted")
	}
}

func TestMetricsCountDecisionsByModeAndOutcome(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	pod := newPod(nil, []corev1.Container{{Name: "a", Image: "nginx"}, {Name: "b", Image: "quay.io/x/y"}}, nil)
	handler(t, ModeDryRun, WithMetrics(m)).Handle(context.Background(), createRequest(t, pod))
	handler(t, ModeEnabled, WithMetrics(m)).Handle(context.Background(), createRequest(t, pod))

	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			key := f.GetName()
			for _, l := range metric.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case metric.Counter != nil:
				got[key] = metric.Counter.GetValue()
			case metric.Histogram != nil:
				got[key] = float64(metric.Histogram.GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"hubcache_webhook_rewrites_total mode=dry-run outcome=rewritten":        1,
		"hubcache_webhook_rewrites_total mode=enabled outcome=rewritten":        1,
		"hubcache_webhook_rewrites_total mode=enabled outcome=not-docker-hub":   1,
		"hubcache_webhook_admission_requests_total mode=dry-run result=warned":  1,
		"hubcache_webhook_admission_requests_total mode=enabled result=patched": 1,
		"hubcache_webhook_admission_duration_seconds mode=enabled":              1,
		"hubcache_webhook_admission_duration_seconds mode=dry-run":              1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (all: %v)", key, got[key], want, got)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
