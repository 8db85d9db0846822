package rewrite

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/hubcache/hubcache/proxy/imageref"
)

// Visibility values of the cache's visibility endpoint (contract).
const (
	VisibilityPublic  = "public"
	VisibilityPrivate = "private"
	VisibilityUnknown = "unknown"
)

// RepositoryVisibility is the cache's answer about one Docker Hub repository.
type RepositoryVisibility struct {
	// Visibility is VisibilityPublic, VisibilityPrivate or VisibilityUnknown.
	Visibility string `json:"visibility"`
	// Served says whether the cache serves the repository (public, or allow-listed).
	Served bool `json:"served"`
}

// Visibilities is what Plan knows about the repositories of a pod with imagePullSecrets. The
// kubelet sends a pull secret only to the registry host it names, so a private image moved
// to the cache would be pulled anonymously and fail: such a pod's images move only when the
// cache says it serves them.
type Visibilities struct {
	// Checked says the cache was asked. Without it a pod with pull secrets is rewritten as
	// one without, each rewrite saying ReasonVisibilityUnchecked.
	Checked bool
	// Answers are keyed by normalised repository name ("docker.io/acme/billing"). A
	// repository without an answer (timeout, error) is unknown.
	Answers map[string]RepositoryVisibility
}

// hasPullSecrets reports whether the kubelet may pull with credentials: then a Docker Hub
// image may be private. The ServiceAccount admission plugin has already copied the
// ServiceAccount's imagePullSecrets into the pod when a webhook sees it.
func hasPullSecrets(spec *corev1.PodSpec) bool {
	return spec != nil && len(spec.ImagePullSecrets) > 0
}

// repository returns the normalised repository name of a reference Image decided to rewrite.
func repository(ref string) string {
	parsed, err := imageref.Parse(ref)
	if err != nil {
		return "" // Image parsed it already; not reached
	}
	return imageref.Parts(parsed).Name()
}

// VisibilityQuestions returns the repositories Plan needs the cache's answer about: those of
// a pod with imagePullSecrets whose images would otherwise be rewritten, each once, in spec
// order. A pod without pull secrets needs none.
func VisibilityQuestions(annotations map[string]string, spec *corev1.PodSpec, p Policy) []string {
	return visibilityQuestions(annotations, spec, func(ref string) Decision { return Image(ref, p) })
}

func visibilityQuestions(annotations map[string]string, spec *corev1.PodSpec, decide func(string) Decision) []string {
	if !hasPullSecrets(spec) {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, d := range plan(annotations, spec, decide) {
		if d.Reason != ReasonVisibilityUnchecked {
			continue
		}
		if r := repository(d.Original); r != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// PlanWith is Plan for a pod whose repositories' visibility is known (or was asked for):
// a pod with imagePullSecrets keeps every image the cache does not say it serves.
func PlanWith(annotations map[string]string, spec *corev1.PodSpec, p Policy, v Visibilities) []Decision {
	return planWith(annotations, spec, func(ref string) Decision { return Image(ref, p) }, v)
}

func planWith(annotations map[string]string, spec *corev1.PodSpec, decide func(string) Decision, v Visibilities) []Decision {
	ds := plan(annotations, spec, decide)
	if !v.Checked {
		return ds
	}
	repos := map[string]string{} // original reference → repository, each parsed once
	for i, d := range ds {
		if d.Reason != ReasonVisibilityUnchecked {
			continue
		}
		repo, ok := repos[d.Original]
		if !ok {
			repo = repository(d.Original)
			repos[d.Original] = repo
		}
		answer, ok := v.Answers[repo]
		switch {
		case ok && answer.Served:
			ds[i].Reason = ReasonRewritten
			ds[i].Detail = fmt.Sprintf("the cache serves %s (%s)", repo, answer.Visibility)
		case ok && answer.Visibility == VisibilityPrivate:
			ds[i].Rewritten, ds[i].Reason = "", ReasonPrivate
			ds[i].Detail = fmt.Sprintf("%s is private on Docker Hub and the cache does not serve it; "+
				"the kubelet pulls it with the pod's imagePullSecrets", repo)
		case ok:
			ds[i].Rewritten, ds[i].Reason = "", ReasonVisibilityUnknown
			ds[i].Detail = fmt.Sprintf("the cache does not know whether %s is public (%s)", repo, answer.Visibility)
		default:
			ds[i].Rewritten, ds[i].Reason = "", ReasonVisibilityUnknown
			ds[i].Detail = fmt.Sprintf("no answer from the cache about %s in time", repo)
		}
	}
	return ds
}
