package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// runDiff runs `hubcache diff args...` as main would and returns its exit status and output.
func runDiff(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"diff"}, args...))
	err := root.Execute()
	switch {
	case err == nil:
		code = 0
	default:
		var ee *exitError
		if !errors.As(err, &ee) {
			t.Fatalf("diff returned %v, not an exitError", err)
		}
		code = ee.code
		if ee.err != nil {
			errOut.WriteString(ee.err.Error())
		}
	}
	return code, out.String(), errOut.String()
}

const dataDir = "testdata/diff"

func TestDiffExitStatusAndOutput(t *testing.T) {
	tests := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		contains []string
		empty    bool
	}{
		{
			name: "a folder with rewrites exits 1 and shows a unified diff",
			args: []string{"-f", dataDir + "/apps"},
			code: 1,
			contains: []string{
				"--- a/shop/Deployment/web\n+++ b/shop/Deployment/web\n@@ -1,2 +1,2 @@\n",
				"-containers[nginx].image: nginx:1.27\n+containers[nginx].image: 127.0.0.1:5000/docker.io/library/nginx:1.27\n",
				" containers[metrics].image: quay.io/prometheus/node-exporter:v1\n",
				"+containers[run].image: 127.0.0.1:5000/docker.io/library/busybox@sha256:",
			},
		},
		{
			name:  "manifests with nothing to rewrite exit 0 and print nothing",
			args:  []string{"-f", dataDir + "/clean.yaml"},
			code:  0,
			empty: true,
		},
		{
			name:     "several -f flags are read in order",
			args:     []string{"-f", dataDir + "/clean.yaml", "-f", dataDir + "/apps/web.yaml", "-o", "markdown"},
			code:     1,
			contains: []string{"## Summary", "| `shop` | 1 | 1 | not-docker-hub: 2 |", "| (not set) | 0 | 0 | pod-skipped: 1 |"},
		},
		{
			name:     "stdin is read with -f -",
			stdin:    "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: redis}]}\n",
			args:     []string{"-f", "-"},
			code:     1,
			contains: []string{"+containers[c].image: 127.0.0.1:5000/docker.io/library/redis:latest"},
		},
		{
			name:     "a custom target is used",
			args:     []string{"-f", dataDir + "/apps/web.yaml", "--target", "cache.example.com:8443"},
			code:     1,
			contains: []string{"+containers[nginx].image: cache.example.com:8443/docker.io/library/nginx:1.27"},
		},
		{
			name:  "excluded images do not count as changes",
			args:  []string{"-f", dataDir + "/apps", "--exclude", "docker.io/library/nginx*", "--exclude", "docker.io/library/busybox*"},
			code:  0,
			empty: true,
		},
		{
			name:     "markdown for nothing found",
			stdin:    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
			args:     []string{"-f", "-", "-o", "markdown"},
			code:     0,
			contains: []string{"No container images found."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runDiff(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s\nstdout:\n%s", code, tt.code, errOut, out)
			}
			if tt.empty && out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			for _, c := range tt.contains {
				if !strings.Contains(out, c) {
					t.Errorf("stdout does not contain %q:\n%s", c, out)
				}
			}
			if strings.Contains(out, "\x1b[") {
				t.Error("output to a non-terminal is coloured")
			}
		})
	}
}

func TestDiffJSONKeysAreTheContract(t *testing.T) {
	code, out, errOut := runDiff(t, "", "-f", dataDir+"/apps", "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, errOut)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not a JSON array: %v\n%s", err, out)
	}
	if len(got) != 3 {
		t.Fatalf("%d entries, want 3:\n%s", len(got), out)
	}
	contract := []string{"container", "containerType", "kind", "name", "namespace", "original", "reason", "rewritten"}
	for i, e := range got {
		var keys []string
		for k := range e {
			if k != "detail" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, contract) {
			t.Errorf("entry %d keys = %v, want %v", i, keys, contract)
		}
	}
	// Folders are read in lexical order: apps/sub/job.json before apps/web.yaml.
	if got[0]["kind"] != "Job" || got[0]["containerType"] != "container" || got[0]["reason"] != "rewritten" {
		t.Errorf("job entry = %v", got[0])
	}
	if got[2]["rewritten"] != "" || got[2]["reason"] != "not-docker-hub" {
		t.Errorf("an image left alone = %v, want rewritten \"\" and reason not-docker-hub", got[2])
	}

	code, out, _ = runDiff(t, "", "-f", dataDir+"/clean.yaml", "-f", dataDir+"/clean.yaml", "-o", "json", "--exclude", "*")
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if strings.TrimSpace(out) == "[]" {
		t.Fatalf("entries left alone must still be listed, got []")
	}
	code, out, _ = runDiff(t, "kind: Namespace\napiVersion: v1\nmetadata: {name: x}\n", "-f", "-", "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("no workloads: exit %d, output %q, want 0 and []", code, out)
	}
}

func TestDiffErrorsExit2(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nothing.yaml")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("not: [a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  []string
	}{
		{"broken YAML names the file and document", "", []string{"-f", dataDir + "/broken.yaml"}, []string{"broken.yaml: document 2: error converting YAML to JSON"}},
		{"broken YAML on stdin names stdin", "apiVersion: v1\nkind: ConfigMap\n---\n a: [\n", []string{"-f", "-"}, []string{"<stdin>: document 2:"}},
		{"a broken file fails the whole run", "", []string{"-f", dataDir + "/apps", "-f", dataDir + "/broken.yaml"}, []string{"document 2"}},
		{"a missing file", "", []string{"-f", missing}, []string{"nothing.yaml"}},
		{"no input", "", nil, []string{"-f"}},
		{"an unknown format", "", []string{"-f", dataDir + "/clean.yaml", "-o", "yaml"}, []string{`"yaml"`}},
		{"a bad target", "", []string{"-f", dataDir + "/clean.yaml", "--target", "http://x"}, []string{"target"}},
		{"a bad exclude pattern", "", []string{"-f", dataDir + "/clean.yaml", "--exclude", "[x"}, []string{"exclude"}},
		{"both -f and --cluster", "", []string{"-f", dataDir + "/clean.yaml", "--cluster"}, []string{"not both"}},
		{"both -n and -A", "", []string{"--cluster", "-n", "a", "-A"}, []string{"-n or -A"}},
		{"cluster flags without --cluster", "", []string{"-f", dataDir + "/clean.yaml", "-A"}, []string{"--all-namespaces only applies with --cluster"}},
		{"an unreadable kubeconfig", "", []string{"--cluster", "--kubeconfig", kubeconfig}, []string{"kubeconfig"}},
		{"an argument instead of -f", "", []string{dataDir + "/clean.yaml"}, []string{"unknown command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			var out, errOut bytes.Buffer
			root.SetIn(strings.NewReader(tt.stdin))
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetArgs(append([]string{"diff"}, tt.args...))
			err := root.Execute()
			if err == nil {
				t.Fatalf("no error; stdout:\n%s", out.String())
			}
			// main exits 2 for any error that is not an exitError with another code.
			var ee *exitError
			if errors.As(err, &ee) && ee.code != 2 {
				t.Fatalf("exit %d, want 2 (%v)", ee.code, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if out.Len() != 0 {
				t.Errorf("an error run wrote a report:\n%s", out.String())
			}
		})
	}
}
