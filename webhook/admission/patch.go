package admission

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// patch applies the changed decisions to a copy of pod and returns the JSONPatch between the
// two. Both sides are marshalled from the same Go type, so the patch touches only what the
// plan changed: fields unknown to our k8s.io/api version are never removed.
//
// Through the ephemeralcontainers subresource the API server keeps only ephemeral container
// changes and silently drops metadata changes, so the originals are reported in a warning
// and the audit annotation there instead of the pod annotation.
func patch(pod *corev1.Pod, changed []rewrite.Decision, ephemeral bool) (admission.Response, error) {
	mutated := pod.DeepCopy()
	rewrite.Apply(&mutated.Spec, changed)
	var warnings []string
	if ephemeral {
		for _, d := range changed {
			warnings = append(warnings, fmt.Sprintf("hubcache: %s %q image %q rewritten to %q",
				d.ContainerType, d.Container, d.Original, d.Rewritten))
		}
	} else {
		merged, warning := mergeOriginals(pod.Annotations[rewrite.AnnotationOriginalImages], rewrite.OriginalImages(changed))
		if warning != "" {
			warnings = append(warnings, warning)
		}
		if mutated.Annotations == nil {
			mutated.Annotations = map[string]string{}
		}
		mutated.Annotations[rewrite.AnnotationOriginalImages] = merged
	}

	before, err := json.Marshal(pod)
	if err != nil {
		return admission.Response{}, fmt.Errorf("encoding the Pod: %w", err)
	}
	after, err := json.Marshal(mutated)
	if err != nil {
		return admission.Response{}, fmt.Errorf("encoding the rewritten Pod: %w", err)
	}
	resp := admission.PatchResponseFromRaw(before, after)
	if !resp.Allowed {
		return admission.Response{}, fmt.Errorf("computing the patch: %s", resp.Result.Message)
	}
	return resp.WithWarnings(warnings...), nil
}

// mergeOriginals adds originals to the JSON object already in the annotation. A later
// decision for the same container wins: after another webhook changed its image, the image
// hubcache saw last is the one it replaced. A value that is not a JSON object of strings is
// replaced, with a warning, rather than failing admission.
func mergeOriginals(existing string, originals map[string]string) (string, string) {
	merged := map[string]string{}
	warning := ""
	if existing != "" {
		if err := json.Unmarshal([]byte(existing), &merged); err != nil {
			merged = map[string]string{}
			warning = fmt.Sprintf("hubcache: annotation %s was not a JSON object of strings and was replaced",
				rewrite.AnnotationOriginalImages)
		}
	}
	for name, image := range originals {
		merged[name] = image
	}
	// A map of strings always marshals.
	b, _ := json.Marshal(merged)
	return string(b), warning
}
