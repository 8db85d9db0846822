package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// change is a decision that rewrites an image, with the container's index in its list.
type change struct {
	rewrite.Decision
	index int
}

// indexed pairs every decision of a plan with its container's index. Plan makes one decision
// per container, list by list in spec order, so the index is a running count per list.
func indexed(ds []rewrite.Decision) []change {
	next := map[rewrite.ContainerType]int{}
	out := make([]change, len(ds))
	for i, d := range ds {
		out[i] = change{Decision: d, index: next[d.ContainerType]}
		next[d.ContainerType]++
	}
	return out
}

// listField is the pod spec field of each container list, as it appears in JSON.
var listField = map[rewrite.ContainerType]string{
	rewrite.Container:          "containers",
	rewrite.InitContainer:      "initContainers",
	rewrite.EphemeralContainer: "ephemeralContainers",
}

// errAnnotationTooLarge is returned when the original-images annotation would not fit.
var errAnnotationTooLarge = fmt.Errorf("the %s annotation would exceed the API server's annotation size limit",
	rewrite.AnnotationOriginalImages)

// patchOps builds one JSONPatch operation per changed image, addressed by its path in the
// object the API server sent, plus one for the original-images annotation (not through the
// ephemeralcontainers subresource, where the API server drops metadata changes). Nothing is
// marshalled back from Go types, so fields this version of k8s.io/api does not know are never
// touched, and the cost is linear in the number of containers.
func patchOps(pod *podView, changed []change, ephemeral bool, maxAnnotationBytes int) ([]jsonpatch.Operation, []string, error) {
	ops := make([]jsonpatch.Operation, 0, len(changed)+1)
	for _, c := range changed {
		ops = append(ops, jsonpatch.Operation{
			Operation: "replace",
			Path:      "/spec/" + listField[c.ContainerType] + "/" + strconv.Itoa(c.index) + "/image",
			Value:     c.Rewritten,
		})
	}
	if ephemeral {
		return ops, nil, nil
	}
	originals := make(map[string]string, len(changed))
	for _, c := range changed {
		originals[c.Container] = c.Original
	}
	merged, warning := mergeOriginals(pod.annotations()[rewrite.AnnotationOriginalImages], originals)
	if annotationBytes(pod.annotations(), merged) > maxAnnotationBytes {
		return nil, nil, errAnnotationTooLarge
	}
	var warnings []string
	if warning != "" {
		warnings = append(warnings, warning)
	}
	switch {
	case pod.annotations() != nil:
		ops = append(ops, jsonpatch.Operation{Operation: "add",
			Path: "/metadata/annotations/" + escapePointer(rewrite.AnnotationOriginalImages), Value: merged})
	case pod.Metadata != nil:
		ops = append(ops, jsonpatch.Operation{Operation: "add",
			Path: "/metadata/annotations", Value: map[string]string{rewrite.AnnotationOriginalImages: merged}})
	default:
		// No metadata (the API server always sends some; a hand-made review may not).
		ops = append(ops, jsonpatch.Operation{Operation: "add", Path: "/metadata",
			Value: map[string]any{"annotations": map[string]string{rewrite.AnnotationOriginalImages: merged}}})
	}
	return ops, warnings, nil
}

// annotationBytes is what the API server counts against its limit: every key and value,
// with the original-images annotation set to merged.
func annotationBytes(annotations map[string]string, merged string) int {
	n := len(rewrite.AnnotationOriginalImages) + len(merged)
	for k, v := range annotations {
		if k != rewrite.AnnotationOriginalImages {
			n += len(k) + len(v)
		}
	}
	return n
}

// escapePointer escapes one JSON Pointer reference token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
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
		if merged == nil { // the value was null, which Unmarshal reads as no map
			merged = map[string]string{}
		}
	}
	for name, image := range originals {
		merged[name] = image
	}
	// Written as encoding/json marshals a map of strings: keys sorted, HTML characters escaped.
	n := 2
	for name, image := range merged {
		n += 6 + len(name) + len(image)
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, name := range slices.Sorted(maps.Keys(merged)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
		b = append(b, ':')
		b = appendJSONString(b, merged[name])
	}
	return string(append(b, '}')), warning
}

// encodedPatch wraps a handler so that its JSONPatch is encoded here, into one buffer, instead
// of by controller-runtime, which marshals every operation on its own through reflection and
// then re-scans it (a sixth of the cost of a 40,000-container Pod). The bytes are the same
// JSON document; only the work differs.
type encodedPatch struct{ admission.Handler }

func (e encodedPatch) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp := e.Handler.Handle(ctx, req)
	if len(resp.Patches) == 0 {
		return resp
	}
	b, err := encodePatch(resp.Patches)
	if err != nil {
		return resp // controller-runtime encodes it, and reports the error
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType, resp.Patches = b, &pt, nil
	return resp
}

// encodePatch writes ops as a JSON array, as jsonpatch.Operation's MarshalJSON would: "value"
// is null for an add or replace without one and left out otherwise.
func encodePatch(ops []jsonpatch.Operation) ([]byte, error) {
	b := make([]byte, 0, 64*len(ops))
	b = append(b, '[')
	for i, op := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"op":`...)
		b = appendJSONString(b, op.Operation)
		b = append(b, `,"path":`...)
		b = appendJSONString(b, op.Path)
		switch v := op.Value.(type) {
		case nil:
			if op.Operation == "add" || op.Operation == "replace" {
				b = append(b, `,"value":null`...)
			}
		case string:
			b = append(b, `,"value":`...)
			b = appendJSONString(b, v)
		default:
			vb, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			b = append(b, `,"value":`...)
			b = append(b, vb...)
		}
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// appendJSONString appends s as a JSON string: directly when it holds only characters that
// encoding/json writes as they are, through encoding/json otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
