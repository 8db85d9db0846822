package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const podYAML = "apiVersion: v1\nkind: Pod\nmetadata: {name: yp}\nspec: {containers: [{name: c, image: redis}]}\n"

func TestDecodeAcceptsWhatKubectlAccepts(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []string
	}{
		{
			name:   "a JSON object followed by YAML documents",
			stream: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}` + "\n---\n" + podYAML,
			want:   []string{"Pod/j=nginx", "Pod/yp=redis"},
		},
		{
			name: "JSON values one after another",
			stream: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`,
			want: []string{"Pod/a=nginx", "Pod/b=busybox"},
		},
		{
			name:   "YAML with a leading separator, comments and an empty document",
			stream: "# header\n---\n" + podYAML + "---\n# only a comment\n---\n",
			want:   []string{"Pod/yp=redis"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, _, err := Decode([]byte(tt.stream))
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(ws); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestADuplicateKeyIsAnErrorNeverAnotherKind(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   string
	}{
		{
			name:   "a YAML Pod whose kind is repeated as ConfigMap",
			stream: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx}]}\nkind: ConfigMap\n",
			want:   `document 1: duplicate key "kind" on line 5 (first on line 2)`,
		},
		{
			name:   "a duplicate key deep in the second YAML document",
			stream: podYAML + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: q}\nspec:\n  containers:\n  - name: c\n    image: nginx\n    image: busybox\n",
			want:   `document 2: duplicate key "image"`,
		},
		{
			name:   "a JSON Pod whose kind is repeated",
			stream: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"kind":"ConfigMap"}` + "\n" + `{"apiVersion":"v1","kind":"ConfigMap"}`,
			want:   "document 1: duplicate key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Decode([]byte(tt.stream))
			if !errors.Is(err, ErrDuplicateKey) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrDuplicateKey containing %q", err, tt.want)
			}
		})
	}
}

func TestACustomResourceWithAPodTemplateGetsAWarning(t *testing.T) {
	stream := `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  template:
    spec:
      containers:
      - {name: web, image: nginx:1.27}
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata: {name: db}
spec:
  instances: 3
  imageName: ghcr.io/cloudnative-pg/postgresql:16
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {image: nginx}
`
	ws, warnings, err := Decode([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 0 {
		t.Errorf("workloads %v, want none", ids(ws))
	}
	if len(warnings) != 2 {
		t.Fatalf("warnings %q, want two (the Rollout and the Cluster, not the ConfigMap)", warnings)
	}
	if !strings.Contains(warnings[0], `document 1: argoproj.io/v1alpha1 Rollout "web"`) || !strings.Contains(warnings[0], "spec.template.spec.containers") {
		t.Errorf("warning %q does not name the Rollout's containers", warnings[0])
	}
	if !strings.Contains(warnings[1], `document 2: postgresql.cnpg.io/v1 Cluster "db"`) || !strings.Contains(warnings[1], "spec.imageName") {
		t.Errorf("warning %q does not name the Cluster's image", warnings[1])
	}
}

func TestReadKustomizationBuildsLikeKubectlDiffK(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"kustomization.yaml": "namespace: shop\nresources: [pod.yaml]\nimages:\n- {name: redis, newTag: \"7.2\"}\n",
		"pod.yaml":           podYAML,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ws, _, err := ReadKustomization(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(ws); !reflect.DeepEqual(got, []string{"Pod/yp=redis:7.2"}) || ws[0].Namespace != "shop" {
		t.Fatalf("got %v in %q, want the kustomized Pod", got, ws[0].Namespace)
	}
	if _, _, err := ReadKustomization(t.TempDir()); err == nil {
		t.Error("a folder without a kustomization was read")
	}
}
