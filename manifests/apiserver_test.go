package manifests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/hubcache/hubcache/test/testenv"
)

// moduleDir returns where the Go module cache holds module@version (downloading it if needed):
// the CRDs are installed from the modules whose Go types the manifests are decoded with.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", module).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", module, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download %s: %s %v", module, m.Error, err)
	}
	return m.Dir
}

// moduleVersion is the version of module this repository's go.mod requires.
func moduleVersion(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	return strings.TrimSpace(string(out))
}

// crdPaths lists the CRD files of cert-manager and of the Prometheus Operator kinds the
// monitoring component uses, at the versions go.mod requires.
func crdPaths(t *testing.T) []string {
	t.Helper()
	cm := moduleDir(t, "github.com/cert-manager/cert-manager@"+moduleVersion(t, "github.com/cert-manager/cert-manager"))
	// The CRDs live in the operator's main module, released with the same version as its API
	// module.
	po := moduleDir(t, "github.com/prometheus-operator/prometheus-operator@"+
		moduleVersion(t, "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring"))
	paths := []string{filepath.Join(cm, "deploy", "crds")}
	for _, kind := range []string{"podmonitors", "servicemonitors", "prometheusrules"} {
		paths = append(paths, filepath.Join(po, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))
	}
	return paths
}

func TestEveryOverlayIsAcceptedByTheAPIServer(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		testenv.Missing(t, "KUBEBUILDER_ASSETS (kube-apiserver and etcd)", `make tools, then eval "$(hack/tools.sh env)"`)
	}
	env := &envtest.Environment{
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: crdPaths(t), ErrorIfPathMissing: true},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping kube-apiserver: %v", err)
		}
	})
	var crds apiextensionsv1.CustomResourceDefinitionList
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.List(ctx, &crds); err != nil || len(crds.Items) < 9 {
		t.Fatalf("%d CRDs installed (%v), want cert-manager's and the monitoring ones", len(crds.Items), err)
	}

	renders := allOverlays(t)
	renders["moved"] = mustRender(t, "moved", moved("production"))
	for name, docs := range renders {
		t.Run(name, func(t *testing.T) {
			// Dry-run objects need their namespace to exist: create the Namespaces for real.
			for _, d := range docs {
				u := toUnstructured(t, d)
				if u.GetKind() == "Namespace" {
					err := c.Patch(ctx, u, client.Apply, client.FieldOwner("hubcache-test"), client.ForceOwnership)
					if err != nil {
						t.Fatalf("creating namespace %s: %v", u.GetName(), err)
					}
				}
			}
			for _, d := range docs {
				u := toUnstructured(t, d)
				err := c.Patch(ctx, u, client.Apply, client.DryRunAll, client.FieldOwner("hubcache-test"), client.ForceOwnership)
				if err != nil {
					t.Errorf("server-side dry-run apply of %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
				}
			}
		})
	}
	// The Pod Security labels are real ones: the API server admits the node's pod (host
	// network) in hubcache's namespace, and refuses it in a namespace at the baseline level.
	objs, err := Objects("production")
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := find(objs, named[*appsv1.DaemonSet]("hubcache-node"))
	sa := &corev1.ServiceAccount{}
	sa.Name, sa.Namespace = ds.Spec.Template.Spec.ServiceAccountName, namespace
	baseline := &corev1.Namespace{}
	baseline.Name, baseline.Labels = "baseline", map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}
	baselineSA := sa.DeepCopy()
	baselineSA.Namespace = baseline.Name
	for _, o := range []client.Object{sa, baseline, baselineSA} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		namespace string
		admitted  bool
	}{{namespace, true}, {baseline.Name, false}} {
		pod := &corev1.Pod{Spec: *ds.Spec.Template.Spec.DeepCopy()}
		pod.Name, pod.Namespace = "node", tc.namespace
		err := c.Create(ctx, pod, client.DryRunAll)
		if tc.admitted && err != nil {
			t.Errorf("the node's pod is refused in %s: %v", tc.namespace, err)
		}
		if !tc.admitted && err == nil {
			t.Errorf("the node's pod is admitted at the baseline level: the check proves nothing")
		}
	}
}

func toUnstructured(t *testing.T, doc []byte) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}
