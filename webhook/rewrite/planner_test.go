package rewrite

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestPlannerDecidesAsPlan plans Pods through one Planner, more distinct references than it
// remembers and some too long to remember, twice over and from several goroutines, and
// checks every plan against Plan's.
func TestPlannerDecidesAsPlan(t *testing.T) {
	p := Policy{Exclude: []string{"docker.io/library/busybox*"}}
	pl := NewPlanner(p)
	var specs []*corev1.PodSpec
	for i := range 3 * plannerImages / 4 {
		specs = append(specs, &corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "a", Image: fmt.Sprintf("team/app%d:1", i)},
				{Name: "b", Image: "nginx"}, // the same in every Pod
				{Name: "c", Image: fmt.Sprintf("quay.io/x/y%d", i)},
			},
			InitContainers: []corev1.Container{{Name: "i", Image: "busybox:1.36"}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "e", Image: "team/" + strings.Repeat("x", plannerMaxRef) + fmt.Sprint(i%3)}}},
		})
	}
	specs = append(specs, podSpec(), &corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "s"}},
		Containers: []corev1.Container{{Name: "a", Image: "acme/billing"}, {Name: "b", Image: "INVALID"}}})
	answers := Visibilities{Checked: true, Answers: map[string]RepositoryVisibility{
		"docker.io/acme/billing": {Visibility: VisibilityPrivate}}}
	check := func() error {
		for _, spec := range specs {
			for _, annotations := range []map[string]string{nil, {AnnotationSkip: "true"}} {
				if got, want := pl.Plan(annotations, spec), Plan(annotations, spec, p); !reflect.DeepEqual(got, want) {
					return fmt.Errorf("Plan: planner %+v, Plan %+v", got, want)
				}
				if got, want := pl.PlanWith(annotations, spec, answers), PlanWith(annotations, spec, p, answers); !reflect.DeepEqual(got, want) {
					return fmt.Errorf("PlanWith: planner %+v, PlanWith %+v", got, want)
				}
				if got, want := pl.VisibilityQuestions(annotations, spec), VisibilityQuestions(annotations, spec, p); !reflect.DeepEqual(got, want) {
					return fmt.Errorf("VisibilityQuestions: planner %v, VisibilityQuestions %v", got, want)
				}
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- check() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	pl.mu.RLock()
	defer pl.mu.RUnlock()
	if n := len(pl.images); n > plannerImages {
		t.Errorf("the planner remembers %d references, more than %d", n, plannerImages)
	}
	for ref := range pl.images {
		if len(ref) > plannerMaxRef {
			t.Errorf("the planner remembers a reference of %d bytes", len(ref))
		}
	}
}
