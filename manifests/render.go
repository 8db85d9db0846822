// Package manifests holds hubcache's kustomize manifests and renders them in-process, so tests
// check exactly what `kubectl apply -k manifests/quickstart` (or production) would send.
package manifests

import (
	"embed"
	"fmt"
	"io/fs"
	"path"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// tree is every kustomization; add new top-level folders (overlays) to the directive.
//
//go:embed base quickstart production components
var tree embed.FS

// Overlays are the installable kustomizations, relative to manifests/.
var Overlays = []string{"quickstart", "production"}

// Render builds the kustomization in dir (relative to manifests/, e.g. "base") and returns
// one YAML document per object, in kustomize's output order.
func Render(dir string) ([][]byte, error) {
	return RenderWith(dir, nil)
}

// RenderWith is Render with extra files (path relative to manifests/ → content) added next to
// the embedded ones first: an overlay of one's own, for example.
func RenderWith(dir string, extra map[string][]byte) ([][]byte, error) {
	fsys := filesys.MakeFsInMemory()
	err := fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := tree.ReadFile(p)
		if err != nil {
			return err
		}
		return fsys.WriteFile(path.Join("/", p), b)
	})
	if err != nil {
		return nil, fmt.Errorf("copying the manifests: %w", err)
	}
	for p, b := range extra {
		if err := fsys.WriteFile(path.Join("/", p), b); err != nil {
			return nil, fmt.Errorf("adding %s: %w", p, err)
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, path.Join("/", dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	docs := make([][]byte, 0, m.Size())
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("rendering %s: %w", r.CurId(), err)
		}
		docs = append(docs, y)
	}
	return docs, nil
}

// Scheme knows every kind the manifests use: Kubernetes' own, cert-manager's and the
// Prometheus Operator's.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding Kubernetes types: %w", err)
	}
	if err := certmanagerv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding cert-manager types: %w", err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding Prometheus Operator types: %w", err)
	}
	return s, nil
}

// Objects renders dir and decodes every object strictly: an unknown or duplicated field, or a
// kind the scheme does not know, is an error.
func Objects(dir string) ([]runtime.Object, error) {
	docs, err := Render(dir)
	if err != nil {
		return nil, err
	}
	return Decode(dir, docs)
}

// Decode decodes rendered documents strictly (see Objects); dir names them in errors.
func Decode(dir string, docs [][]byte) ([]runtime.Object, error) {
	s, err := Scheme()
	if err != nil {
		return nil, err
	}
	objs := make([]runtime.Object, 0, len(docs))
	for i, doc := range docs {
		obj, err := decodeStrict(s, doc)
		if err != nil {
			return nil, fmt.Errorf("object %d of %s: %w", i+1, dir, err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// decodeStrict decodes one YAML or JSON document into its Go type.
func decodeStrict(s *runtime.Scheme, doc []byte) (runtime.Object, error) {
	obj, gvk, err := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer().Decode(doc, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decoding %v: %w", gvk, err)
	}
	return obj, nil
}
