// Package manifest reads Kubernetes manifests (files, folders, stdin; YAML or JSON, several
// documents each) and finds the pod templates in them, so the rewrite plan can run over what
// would be applied. It does no network I/O.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
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

// Decode reads every document of one stream. A stream whose first non-blank byte is '{' or
// '[' is read as a sequence of JSON values, anything else as YAML separated by "---". Errors
// name the 1-based document number; the caller adds the file name.
func Decode(data []byte) ([]Workload, error) {
	var out []Workload
	n := 0
	each := func(doc []byte) error {
		n++
		ws, err := decodeJSON(doc)
		if err != nil {
			return fmt.Errorf("document %d: %w", n, err)
		}
		out = append(out, ws...)
		return nil
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		for {
			var raw json.RawMessage
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return nil, fmt.Errorf("document %d: invalid JSON: %w", n+1, err)
			}
			if err := each(raw); err != nil {
				return nil, err
			}
		}
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: reading YAML: %w", n+1, err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: error converting YAML to JSON: %w", n+1, err)
		}
		if err := each(js); err != nil {
			return nil, err
		}
	}
}

// decodeJSON turns one JSON document into its workloads: none for an empty document or a
// kind without a pod template, one for a workload, any number for a v1 List.
func decodeJSON(doc []byte) ([]Workload, error) {
	doc = bytes.TrimSpace(doc)
	if len(doc) == 0 || bytes.Equal(doc, []byte("null")) {
		return nil, nil // an empty document, e.g. only comments
	}
	if doc[0] != '{' {
		return nil, fmt.Errorf("%w: expected a mapping", ErrNotObject)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("reading apiVersion and kind: %w", err)
	}
	if tm.Kind == "" {
		return nil, fmt.Errorf("%w: kind is not set", ErrNotObject)
	}
	if tm.APIVersion == "" {
		return nil, fmt.Errorf("%s: apiVersion is not set", tm.Kind)
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	gvk := gv.WithKind(tm.Kind)
	if gvk == listGVK {
		return decodeList(doc)
	}
	obj := newObject(gvk)
	if obj == nil {
		if want, templated := supportedVersion(gvk.GroupKind()); templated {
			// Skipping it silently would hide images that do get rewritten once applied.
			return nil, fmt.Errorf("%s %s is not supported; use apiVersion %s", tm.Kind, tm.APIVersion, want)
		}
		return nil, nil // a kind without a pod template: nothing to rewrite
	}
	if err := json.Unmarshal(doc, obj); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", tm.Kind, err)
	}
	w, ok := FromObject(obj)
	if !ok {
		return nil, nil
	}
	return []Workload{w}, nil
}

var listGVK = corev1.SchemeGroupVersion.WithKind("List")

// decodeList decodes the items of a v1 List one by one, so an error names the item.
func decodeList(doc []byte) ([]Workload, error) {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(doc, &list); err != nil {
		return nil, fmt.Errorf("decoding List: %w", err)
	}
	var out []Workload
	for i, item := range list.Items {
		ws, err := decodeJSON(item)
		if err != nil {
			return nil, fmt.Errorf("List item %d: %w", i+1, err)
		}
		out = append(out, ws...)
	}
	return out, nil
}
