package rewrite

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Bounds of a Planner's memory of decisions.
const (
	// plannerImages is how many distinct references a Planner remembers: more than the
	// images of the workloads of most clusters.
	plannerImages = 1024
	// plannerMaxRef is the longest reference a Planner remembers (a valid one is well under:
	// a 255-character name, a 128-character tag and a digest), so that its memory stays
	// within about a megabyte and a half whatever the Pods hold.
	plannerMaxRef = 512
)

// Planner is Plan, PlanWith and VisibilityQuestions for one policy, for a caller that plans
// many Pods with the same images (the webhook: every replica of a workload, every restart,
// has the images of the last). It remembers Image's decision about each reference it has
// seen, up to plannerImages of them, so a reference is parsed once rather than once per Pod;
// parsing was most of a plan's cost. Image is a function of the reference and the policy
// alone, so the decisions are those Plan makes. Safe for concurrent use.
type Planner struct {
	policy Policy
	mu     sync.RWMutex
	images map[string]Decision
}

// NewPlanner returns a Planner for p.
func NewPlanner(p Policy) *Planner {
	return &Planner{policy: p, images: make(map[string]Decision)}
}

// Plan is Plan with the planner's policy.
func (pl *Planner) Plan(annotations map[string]string, spec *corev1.PodSpec) []Decision {
	return plan(annotations, spec, pl.image)
}

// PlanWith is PlanWith with the planner's policy.
func (pl *Planner) PlanWith(annotations map[string]string, spec *corev1.PodSpec, v Visibilities) []Decision {
	return planWith(annotations, spec, pl.image, v)
}

// VisibilityQuestions is VisibilityQuestions with the planner's policy.
func (pl *Planner) VisibilityQuestions(annotations map[string]string, spec *corev1.PodSpec) []string {
	return visibilityQuestions(annotations, spec, pl.image)
}

// image is Image(ref, policy), remembered. Past plannerImages references one remembered
// decision, chosen by the map's random iteration order, makes room for the new one.
func (pl *Planner) image(ref string) Decision {
	pl.mu.RLock()
	d, ok := pl.images[ref]
	pl.mu.RUnlock()
	if ok {
		return d
	}
	d = Image(ref, pl.policy)
	if len(ref) > plannerMaxRef {
		return d
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if len(pl.images) >= plannerImages {
		for k := range pl.images {
			delete(pl.images, k)
			break
		}
	}
	pl.images[ref] = d
	return d
}
