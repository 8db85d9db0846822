package rewrite

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/google/go-containerregistry/pkg/name"
)

func podSpec() *corev1.PodSpec {
	return &corev1.PodSpec{
		Containers: []corev1.Container{
			{Name: "web", Image: "nginx:1.27"},
			{Name: "sidecar", Image: "quay.io/org/sidecar:1"},
		},
		InitContainers: []corev1.Container{
			{Name: "init", Image: "busybox@" + dig},
		},
		EphemeralContainers: []corev1.EphemeralContainer{
			{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "docker.io/library/alpine"}},
		},
	}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		policy      Policy
		want        []Decision
	}{
		{
			name: "containers, then init containers, then ephemeral containers, each with a reason",
			want: []Decision{
				{Container: "web", ContainerType: Container, Original: "nginx:1.27", Rewritten: tgt + "library/nginx:1.27", Reason: ReasonRewritten},
				{Container: "sidecar", ContainerType: Container, Original: "quay.io/org/sidecar:1", Reason: ReasonOtherRegistry},
				{Container: "init", ContainerType: InitContainer, Original: "busybox@" + dig, Rewritten: tgt + "library/busybox@" + dig, Reason: ReasonRewritten},
				{Container: "debug", ContainerType: EphemeralContainer, Original: "docker.io/library/alpine", Rewritten: tgt + "library/alpine:latest", Reason: ReasonRewritten},
			},
		},
		{
			name:        "a pod annotated skip keeps every image",
			annotations: map[string]string{AnnotationSkip: "true"},
			want: []Decision{
				{Container: "web", ContainerType: Container, Original: "nginx:1.27", Reason: ReasonPodSkipped},
				{Container: "sidecar", ContainerType: Container, Original: "quay.io/org/sidecar:1", Reason: ReasonPodSkipped},
				{Container: "init", ContainerType: InitContainer, Original: "busybox@" + dig, Reason: ReasonPodSkipped},
				{Container: "debug", ContainerType: EphemeralContainer, Original: "docker.io/library/alpine", Reason: ReasonPodSkipped},
			},
		},
		{
			name:        "a skip annotation other than true is ignored",
			annotations: map[string]string{AnnotationSkip: "yes"},
			policy:      Policy{Exclude: []string{"docker.io/library/busybox*", "docker.io/library/alpine"}},
			want: []Decision{
				{Container: "web", ContainerType: Container, Original: "nginx:1.27", Rewritten: tgt + "library/nginx:1.27", Reason: ReasonRewritten},
				{Container: "sidecar", ContainerType: Container, Original: "quay.io/org/sidecar:1", Reason: ReasonOtherRegistry},
				{Container: "init", ContainerType: InitContainer, Original: "busybox@" + dig, Reason: ReasonExcluded},
				{Container: "debug", ContainerType: EphemeralContainer, Original: "docker.io/library/alpine", Reason: ReasonExcluded},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.annotations, podSpec(), tt.policy)
			for i := range got {
				if got[i].Reason != ReasonRewritten && got[i].Detail == "" {
					t.Errorf("decision %d (%s) has no Detail", i, got[i].Reason)
				}
				got[i].Detail = ""
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Plan() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestPlanOfNothing(t *testing.T) {
	if ds := Plan(nil, nil, Policy{}); len(ds) != 0 {
		t.Errorf("Plan(nil spec) = %v, want none", ds)
	}
	if ds := Plan(nil, &corev1.PodSpec{}, Policy{}); len(ds) != 0 {
		t.Errorf("Plan(empty spec) = %v, want none", ds)
	}
}

func TestApplySetsRewrittenImagesAndIsIdempotent(t *testing.T) {
	spec := podSpec()
	ds := Plan(nil, spec, Policy{})
	if !Apply(spec, ds) {
		t.Fatal("Apply reported no change")
	}
	want := []string{tgt + "library/nginx:1.27", "quay.io/org/sidecar:1", tgt + "library/busybox@" + dig, tgt + "library/alpine:latest"}
	got := []string{spec.Containers[0].Image, spec.Containers[1].Image, spec.InitContainers[0].Image, spec.EphemeralContainers[0].Image}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("images after Apply = %v, want %v", got, want)
	}
	wantOrig := map[string]string{"web": "nginx:1.27", "init": "busybox@" + dig, "debug": "docker.io/library/alpine"}
	if o := OriginalImages(ds); !reflect.DeepEqual(o, wantOrig) {
		t.Errorf("OriginalImages = %v, want %v", o, wantOrig)
	}

	again := Plan(nil, spec, Policy{})
	if Apply(spec, again) {
		t.Error("a second Plan+Apply changed the spec")
	}
	if o := OriginalImages(again); len(o) != 0 {
		t.Errorf("second plan's OriginalImages = %v, want empty", o)
	}
}

func TestApplyIgnoresStaleDecisions(t *testing.T) {
	spec := podSpec()
	ds := Plan(nil, spec, Policy{})
	spec.Containers[0].Image = "nginx:1.28"
	Apply(spec, ds)
	if spec.Containers[0].Image != "nginx:1.28" {
		t.Errorf("a stale decision overwrote %q", spec.Containers[0].Image)
	}
	if Apply(nil, ds) {
		t.Error("Apply(nil) reported a change")
	}
}

func FuzzImage(f *testing.F) {
	for _, s := range []string{
		"nginx", "nginx:1.27", "nginx@" + dig, "nginx:1.27@" + dig, "library/nginx", "docker.io/x",
		"index.docker.io/library/x:1", "registry-1.docker.io/a/b", "quay.io/a/b", "localhost:5000/x",
		"[::1]:5000/x", "MyReg/app", "Nginx", "a//b", tgt + "library/nginx:latest", "",
		"u/" + string(make([]byte, 240)), "a-b_c.d__e/f:_g", "x:y@sha512:zz",
	} {
		f.Add(s, "")
		f.Add(s, "cache.example.com:443")
	}
	f.Fuzz(func(t *testing.T, ref, target string) {
		p := Policy{Target: target}
		if p.Validate() != nil {
			p = Policy{}
		}
		d := Image(ref, p)
		if !d.Changed() {
			if d.Rewritten != "" {
				t.Fatalf("Image(%q) left alone (%s) but Rewritten = %q", ref, d.Reason, d.Rewritten)
			}
			return
		}
		if d.Reason != ReasonRewritten {
			t.Fatalf("Image(%q) rewrote with reason %s", ref, d.Reason)
		}
		if _, err := name.ParseReference(d.Rewritten); err != nil {
			t.Fatalf("Image(%q) = %q, which pkg/name rejects: %v", ref, d.Rewritten, err)
		}
		if again := Image(d.Rewritten, p); again.Changed() {
			t.Fatalf("Image(%q) = %q, and again = %q", ref, d.Rewritten, again.Rewritten)
		}
	})
}
