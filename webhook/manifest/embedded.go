package manifest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// embeddedTemplateWarnings looks inside the spec of an object of a kind hubcache does not
// read for the shapes that carry images: a list of containers with images (the pod template
// of an Argo Rollout, a Knative Service, a KEDA ScaledJob …) or an image field (a CNPG
// Cluster's imageName). The controller of such an object creates Pods that the webhook
// rewrites, but diff cannot show which: the warning says so instead of a silent "clean".
func embeddedTemplateWarnings(doc []byte, tm metav1.TypeMeta) []string {
	var obj struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec any `json:"spec"`
	}
	if err := json.Unmarshal(doc, &obj); err != nil || obj.Spec == nil {
		return nil
	}
	var paths []string
	findImages(obj.Spec, "spec", 0, &paths)
	if len(paths) == 0 {
		return nil
	}
	sort.Strings(paths)
	return []string{fmt.Sprintf("%s %s %q carries images hubcache diff does not read (%s); "+
		"the webhook rewrites the Pods its controller creates, so check those with diff --cluster",
		tm.APIVersion, tm.Kind, obj.Metadata.Name, strings.Join(paths, ", "))}
}

// maxDepth bounds the walk: pod templates sit a few levels below spec.
const maxDepth = 12

func findImages(v any, path string, depth int, out *[]string) {
	if depth > maxDepth || len(*out) >= 5 {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			child, p := t[k], path+"."+k
			switch {
			case (k == "containers" || k == "initContainers") && listHasImages(child):
				*out = append(*out, p)
				continue
			case k == "image" || k == "imageName":
				if _, ok := child.(string); ok {
					*out = append(*out, p)
					continue
				}
			}
			findImages(child, p, depth+1, out)
		}
	case []any:
		for i, child := range t {
			findImages(child, fmt.Sprintf("%s[%d]", path, i), depth+1, out)
		}
	}
}

func listHasImages(v any) bool {
	list, ok := v.([]any)
	if !ok {
		return false
	}
	for _, item := range list {
		if m, ok := item.(map[string]any); ok {
			if _, ok := m["image"].(string); ok {
				return true
			}
		}
	}
	return false
}
