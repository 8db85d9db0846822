package admission

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// fakeVisibility answers from a table, or waits for the deadline when slow.
type fakeVisibility struct {
	mu      sync.Mutex
	asked   [][]string
	answers map[string]rewrite.RepositoryVisibility
	slow    bool
}

func (f *fakeVisibility) Lookup(ctx context.Context, repos []string) (map[string]rewrite.RepositoryVisibility, error) {
	f.mu.Lock()
	f.asked = append(f.asked, repos)
	f.mu.Unlock()
	if f.slow {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	out := map[string]rewrite.RepositoryVisibility{}
	for _, r := range repos {
		if a, ok := f.answers[r]; ok {
			out[r] = a
		}
	}
	return out, nil
}

func newFakeVisibility() *fakeVisibility {
	return &fakeVisibility{answers: map[string]rewrite.RepositoryVisibility{
		"docker.io/library/nginx": {Visibility: "public", Served: true},
		"docker.io/acme/billing":  {Visibility: "private"},
		"docker.io/acme/shared":   {Visibility: "private", Served: true},
		"docker.io/acme/unsure":   {Visibility: "unknown"},
	}}
}

func podWithSecret(secret bool, images ...string) *corev1.Pod {
	var cs []corev1.Container
	for i, img := range images {
		cs = append(cs, corev1.Container{Name: string(rune('a' + i)), Image: img})
	}
	p := newPod(nil, cs, nil)
	if secret {
		p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "hub"}}
	}
	return p
}

func TestAPodWithPullSecretsKeepsTheImagesTheCacheDoesNotServe(t *testing.T) {
	fv := newFakeVisibility()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := handler(t, ModeEnabled, WithVisibility(fv), WithMetrics(m))
	pod := podWithSecret(true, "nginx:1.27", "acme/billing:4.2", "acme/shared:1", "acme/unsure:2", "acme/silent:3", "quay.io/x/y")
	req := createRequest(t, pod)
	resp := h.Handle(context.Background(), req)
	if len(fv.asked) != 1 || len(fv.asked[0]) != 5 {
		t.Fatalf("asked %v, want one question with the 5 Docker Hub repositories", fv.asked)
	}
	after := decode(t, applyPatch(t, req.Object.Raw, resp))
	want := []string{
		"127.0.0.1:5000/docker.io/library/nginx:1.27", "acme/billing:4.2",
		"127.0.0.1:5000/docker.io/acme/shared:1", "acme/unsure:2", "acme/silent:3", "quay.io/x/y",
	}
	for i, c := range after.Spec.Containers {
		if c.Image != want[i] {
			t.Errorf("container %s image %q, want %q", c.Name, c.Image, want[i])
		}
	}
	all := strings.Join(resp.Warnings, "\n")
	for _, w := range []string{`"acme/billing:4.2" left unchanged: private-repository`,
		`"acme/unsure:2" left unchanged: visibility-unknown`, `"acme/silent:3" left unchanged: visibility-unknown`} {
		if !strings.Contains(all, w) {
			t.Errorf("warnings %q lack %q", resp.Warnings, w)
		}
	}
	var kept []rewrite.Decision
	if err := json.Unmarshal([]byte(resp.AuditAnnotations[auditKept]), &kept); err != nil || len(kept) != 3 {
		t.Errorf("audit annotation %q: %v, want the 3 kept images", resp.AuditAnnotations[auditKept], err)
	}
	for reason, want := range map[string]float64{"private-repository": 1, "visibility-unknown": 2, "rewritten": 2} {
		if got := testutil.ToFloat64(m.decisions.WithLabelValues("enabled", reason)); got != want {
			t.Errorf("hubcache_webhook_rewrites_total{outcome=%q} = %v, want %v", reason, got, want)
		}
	}
}

func TestAPodWithoutPullSecretsIsRewrittenWithoutAsking(t *testing.T) {
	fv := newFakeVisibility()
	resp := handler(t, ModeEnabled, WithVisibility(fv)).Handle(context.Background(), createRequest(t, podWithSecret(false, "acme/billing:4.2")))
	if len(fv.asked) != 0 || len(resp.Patches) != 2 {
		t.Fatalf("asked %v, patches %v; want no question and a rewrite", fv.asked, resp.Patches)
	}
}

func TestASlowCacheLeavesTheImagesAloneWithinTheBudget(t *testing.T) {
	fv := newFakeVisibility()
	fv.slow = true
	limits := DefaultLimits()
	limits.VisibilityBudget = 20 * time.Millisecond
	h := handler(t, ModeEnabled, WithVisibility(fv), WithLimits(limits))
	resp := h.Handle(context.Background(), createRequest(t, podWithSecret(true, "nginx", "acme/billing")))
	if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Warnings) != 2 || !strings.Contains(resp.Warnings[0], "visibility-unknown") {
		t.Fatalf("allowed=%v patches=%v warnings=%q, want both images kept as visibility-unknown", resp.Allowed, resp.Patches, resp.Warnings)
	}
}

func TestWithoutAVisibilitySourceAPodWithPullSecretsIsRewrittenUnchecked(t *testing.T) {
	resp := handler(t, ModeEnabled).Handle(context.Background(), createRequest(t, podWithSecret(true, "acme/billing")))
	var audit []rewrite.Decision
	if err := json.Unmarshal([]byte(resp.AuditAnnotations[auditRewritten]), &audit); err != nil {
		t.Fatal(err)
	}
	if len(resp.Patches) != 2 || len(audit) != 1 || audit[0].Reason != rewrite.ReasonVisibilityUnchecked {
		t.Fatalf("patches %v audit %+v, want a rewrite saying visibility-unchecked", resp.Patches, audit)
	}
}

func TestDryRunWarnsAboutKeptImagesToo(t *testing.T) {
	resp := handler(t, ModeDryRun, WithVisibility(newFakeVisibility())).Handle(context.Background(),
		createRequest(t, podWithSecret(true, "nginx", "acme/billing")))
	all := strings.Join(resp.Warnings, "\n")
	if len(resp.Patches) != 0 || !strings.Contains(all, "would become") || !strings.Contains(all, "private-repository") {
		t.Fatalf("patches %v warnings %q", resp.Patches, resp.Warnings)
	}
}
