// Package manifest reads Kubernetes manifests (files, folders, stdin; YAML or JSON, several
// documents each) and finds the pod templates in them, so the rewrite plan can run over what
// would be applied. It does no network I/O.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
)

// Workload is one object that carries a pod template (or is a Pod), with what the rewrite
// plan needs from it.
type Workload struct {
	Kind      string
	Namespace string
	Name      string
	// UID and Owners let a live listing drop objects whose controller is also listed.
	UID    string
	Owners []metav1.OwnerReference
	// Annotations are the pod's (or pod template's) annotations, where hubcache.io/skip lives.
	Annotations map[string]string
	Spec        *corev1.PodSpec
}

// ErrNotObject is wrapped when a document is not a Kubernetes object (no kind, or not a map).
var ErrNotObject = errors.New("not a Kubernetes object")

// ErrDuplicateKey is wrapped when a mapping has the same key twice. kubectl would keep the
// last one, which can silently turn a document into another kind: hubcache refuses it.
var ErrDuplicateKey = errors.New("duplicate key")

// Decode reads every document of one stream with the decoder kubectl apply -f uses
// (apimachinery's YAML-or-JSON stream decoder: JSON values, YAML documents separated by
// "---", or JSON followed by YAML), so hubcache accepts exactly the streams kubectl accepts.
// It is stricter in one way: a duplicate key is an error. Warnings name objects that embed
// pod templates hubcache does not read. Errors and warnings name the 1-based document
// number; the caller adds the file name.
func Decode(data []byte) ([]Workload, []string, error) {
	if err := checkDuplicateKeys(data); err != nil {
		return nil, nil, err
	}
	var (
		out      []Workload
		warnings []string
	)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for n := 1; ; n++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return out, warnings, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", n, err)
		}
		// A JSON value keeps its duplicate keys through the decoder; a YAML document was
		// checked above.
		if strict, err := sigsjson.UnmarshalStrict(raw, new(any), sigsjson.DisallowDuplicateFields); err == nil && len(strict) > 0 {
			return nil, nil, fmt.Errorf("document %d: %w: %v", n, ErrDuplicateKey, strict[0])
		}
		ws, ws2, err := decodeJSON(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("document %d: %w", n, err)
		}
		out = append(out, ws...)
		for _, w := range ws2 {
			warnings = append(warnings, fmt.Sprintf("document %d: %s", n, w))
		}
	}
}

// decodeJSON turns one JSON document into its workloads: none for an empty document or a
// kind without a pod template, one for a workload, any number for a v1 List.
func decodeJSON(doc []byte) ([]Workload, []string, error) {
	doc = bytes.TrimSpace(doc)
	if len(doc) == 0 || bytes.Equal(doc, []byte("null")) {
		return nil, nil, nil // an empty document, e.g. only comments
	}
	if doc[0] != '{' {
		return nil, nil, fmt.Errorf("%w: expected a mapping", ErrNotObject)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(doc, &tm); err != nil {
		return nil, nil, fmt.Errorf("reading apiVersion and kind: %w", err)
	}
	if tm.Kind == "" {
		return nil, nil, fmt.Errorf("%w: kind is not set", ErrNotObject)
	}
	if tm.APIVersion == "" {
		return nil, nil, fmt.Errorf("%s: apiVersion is not set", tm.Kind)
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	gvk := gv.WithKind(tm.Kind)
	if gvk == listGVK {
		return decodeList(doc)
	}
	obj := newObject(gvk)
	if obj == nil {
		if want, templated := supportedVersion(gvk.GroupKind()); templated {
			// Skipping it silently would hide images that do get rewritten once applied.
			return nil, nil, fmt.Errorf("%s %s is not supported; use apiVersion %s", tm.Kind, tm.APIVersion, want)
		}
		// A kind without a pod template hubcache knows: nothing to rewrite, unless it embeds
		// one (a custom resource such as an Argo Rollout), which deserves a word.
		return nil, embeddedTemplateWarnings(doc, tm), nil
	}
	if err := json.Unmarshal(doc, obj); err != nil {
		return nil, nil, fmt.Errorf("decoding %s: %w", tm.Kind, err)
	}
	w, ok := FromObject(obj)
	if !ok {
		return nil, nil, nil
	}
	return []Workload{w}, nil, nil
}

var listGVK = corev1.SchemeGroupVersion.WithKind("List")

// decodeList decodes the items of a v1 List one by one, so an error names the item.
func decodeList(doc []byte) ([]Workload, []string, error) {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(doc, &list); err != nil {
		return nil, nil, fmt.Errorf("decoding List: %w", err)
	}
	var (
		out      []Workload
		warnings []string
	)
	for i, item := range list.Items {
		ws, ws2, err := decodeJSON(item)
		if err != nil {
			return nil, nil, fmt.Errorf("List item %d: %w", i+1, err)
		}
		out = append(out, ws...)
		for _, w := range ws2 {
			warnings = append(warnings, fmt.Sprintf("List item %d: %s", i+1, w))
		}
	}
	return out, warnings, nil
}
