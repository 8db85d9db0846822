package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// ids lists workloads as "Kind/name" with their first image, to compare in one line.
func ids(ws []Workload) []string {
	var out []string
	for _, w := range ws {
		img := ""
		if len(w.Spec.Containers) > 0 {
			img = w.Spec.Containers[0].Image
		}
		out = append(out, w.Kind+"/"+w.Name+"="+img)
	}
	return out
}

func TestReadFindsEveryKindWithAPodTemplate(t *testing.T) {
	ws, _, err := Read("testdata/all-kinds.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Pod/pod=nginx", "Deployment/deploy=nginx", "StatefulSet/sts=redis", "DaemonSet/ds=fluentd",
		"ReplicaSet/rs=nginx", "ReplicationController/rc=nginx", "Job/job=perl", "CronJob/cron=alpine", "PodTemplate/tmpl=alpine"}
	if got := ids(ws); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if ws[0].Annotations["hubcache.io/skip"] != "true" || ws[0].Namespace != "ns1" {
		t.Errorf("pod annotations/namespace lost: %+v", ws[0])
	}
	if ws[1].Spec.InitContainers[0].Image != "busybox" {
		t.Errorf("deployment init container lost: %+v", ws[1].Spec)
	}
	if ws[7].Annotations["a"] != "b" {
		t.Errorf("cron job template annotations lost: %+v", ws[7].Annotations)
	}
}

func TestReadJSONStreamAndNestedLists(t *testing.T) {
	ws, _, err := Read("testdata/list.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Pod/a=nginx", "Deployment/b=redis", "Pod/c=busybox"}
	if got := ids(ws); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReadFolderRecursivelyInLexicalOrder(t *testing.T) {
	ws, _, err := Read("testdata/tree", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Pod/a=nginx", "Pod/b=nginx", "Pod/c=nginx"}
	if got := ids(ws); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReadStdin(t *testing.T) {
	in := strings.NewReader("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n")
	ws, _, err := Read(Stdin, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(ws); !reflect.DeepEqual(got, []string{"Pod/p=x"}) {
		t.Fatalf("got %v", got)
	}
}

func TestReadErrorsNameFileAndDocument(t *testing.T) {
	const pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n"
	tests := []struct {
		name    string
		content string
		want    []string
	}{
		{"broken YAML in the third document", pod + "---\n" + pod + "---\nkind: Pod\n  bad: [indent\n", []string{"bad.yaml: document 3: error converting YAML to JSON:"}},
		{"a document without kind", pod + "---\napiVersion: v1\nmetadata: {name: x}\n", []string{"bad.yaml: document 2:", "kind is not set"}},
		{"a document that is a scalar", "just text\n", []string{"bad.yaml: document 1:", "not a Kubernetes object"}},
		{"a document without apiVersion", "kind: Pod\n", []string{"bad.yaml: document 1: Pod: apiVersion is not set"}},
		{"a wrongly typed field", "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: c, image: 5}]}\n", []string{"bad.yaml: document 1: decoding Pod:"}},
		{"an old apiVersion of a workload", "apiVersion: extensions/v1beta1\nkind: Deployment\n", []string{"bad.yaml: document 1:", "use apiVersion apps/v1"}},
		{"a bad List item", "apiVersion: v1\nkind: List\nitems: [{kind: Pod}]\n", []string{"bad.yaml: document 1: List item 1: Pod: apiVersion is not set"}},
		{"broken JSON in the second value", `{"apiVersion":"v1","kind":"ConfigMap"} {"apiVersion": `, []string{"bad.yaml: document 2:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Read(p, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestReadMissingPath(t *testing.T) {
	_, _, err := Read("testdata/missing.yaml", nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "testdata/missing.yaml") {
		t.Errorf("error = %v, want a not-exist error naming the path", err)
	}
}
