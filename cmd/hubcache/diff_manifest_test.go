package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secretPod = `apiVersion: v1
kind: Pod
metadata: {name: billing, namespace: acme}
spec:
  imagePullSecrets: [{name: hub}]
  containers:
  - {name: api, image: acme/billing:4.2}
  - {name: web, image: nginx:1.27}
`

func TestDiffReadsManifestsAsKubectlDoes(t *testing.T) {
	kdir := t.TempDir()
	for name, content := range map[string]string{
		"kustomization.yaml": "namespace: shop\nresources: [pod.yaml]\n",
		"pod.yaml":           "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: redis}]}\n",
	} {
		if err := os.WriteFile(filepath.Join(kdir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{
			name:   "a JSON object then YAML on stdin",
			stdin:  `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}` + "\n---\n" + "apiVersion: v1\nkind: Pod\nmetadata: {name: yp}\nspec: {containers: [{name: c, image: redis}]}\n",
			args:   []string{"-f", "-"},
			code:   1,
			stdout: []string{"a/Pod/j", "a/Pod/yp"},
		},
		{
			name:   "-k builds the kustomization",
			args:   []string{"-k", kdir},
			code:   1,
			stdout: []string{"a/shop/Pod/p", "+containers[c].image: 127.0.0.1:5000/docker.io/library/redis:latest"},
		},
		{
			name:   "a custom resource with a pod template gets a warning",
			stdin:  "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: web}\nspec: {template: {spec: {containers: [{name: web, image: nginx}]}}}\n",
			args:   []string{"-f", "-"},
			code:   0,
			stderr: []string{`warning: <stdin>: document 1: argoproj.io/v1alpha1 Rollout "web" carries images`},
		},
		{
			name:   "without --proxy a pod with imagePullSecrets says its images need the check",
			stdin:  secretPod,
			args:   []string{"-f", "-", "-o", "json"},
			code:   1,
			stdout: []string{`"reason": "visibility-unchecked"`, "imagePullSecrets"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runDiff(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s\nstdout:\n%s", code, tt.code, errOut, out)
			}
			for _, c := range tt.stdout {
				if !strings.Contains(out, c) {
					t.Errorf("stdout does not contain %q:\n%s", c, out)
				}
			}
			for _, c := range tt.stderr {
				if !strings.Contains(errOut, c) {
					t.Errorf("stderr does not contain %q:\n%s", c, errOut)
				}
			}
		})
	}
}

func TestDiffRefusesDuplicateKeysAndStdinTwice(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"a Pod with a second kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx}]}\nkind: ConfigMap\n",
			[]string{"-f", "-"}, `<stdin>: document 1: duplicate key "kind"`},
		{"-f - twice", "", []string{"-f", "-", "-f", "-"}, "more than once"},
		{"--cached without --cluster", "", []string{"-f", "-", "--cached"}, "needs --cluster"},
		{"a kustomization that does not exist", "", []string{"-k", filepath.Join(t.TempDir(), "none")}, "kustomize build"},
		{"--proxy-ca-file without --proxy", "", []string{"-f", "-", "--proxy-ca-file", "/x"}, "need --proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runDiff(t, tt.stdin, tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.want) || out != "" {
				t.Fatalf("exit %d stderr %q stdout %q; want 2 with %q", code, errOut, out, tt.want)
			}
		})
	}
}

func TestDiffWithProxyDecidesAsTheWebhook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hubcache/v1/visibility" {
			http.NotFound(w, r)
			return
		}
		var items []map[string]any
		for _, repo := range r.URL.Query()["repository"] {
			public := repo == "docker.io/library/nginx"
			vis := "private"
			if public {
				vis = "public"
			}
			items = append(items, map[string]any{"repository": repo, "visibility": vis, "served": public})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"repositories": items})
	}))
	defer srv.Close()
	code, out, errOut := runDiff(t, secretPod, "-f", "-", "-o", "json", "--proxy", srv.URL)
	if code != 1 {
		t.Fatalf("exit %d; stderr %s", code, errOut)
	}
	var entries []struct {
		Container string `json:"container"`
		Rewritten string `json:"rewritten"`
		Reason    string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.Container] = e.Reason + " " + e.Rewritten
	}
	if got["api"] != "private-repository " || got["web"] != "rewritten 127.0.0.1:5000/docker.io/library/nginx:1.27" {
		t.Fatalf("decisions %v", got)
	}
}

func TestDiffWithAnUnreachableProxyKeepsTheImagesAndWarns(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	code, out, errOut := runDiff(t, secretPod, "-f", "-", "-o", "json", "--proxy", url)
	if code != 0 || !strings.Contains(out, "visibility-unknown") || !strings.Contains(errOut, "warning") {
		t.Fatalf("exit %d stdout %s stderr %s; want 0, visibility-unknown and a warning", code, out, errOut)
	}
}
