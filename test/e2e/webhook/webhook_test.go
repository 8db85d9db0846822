// Package webhook_test runs hubcache's admission webhook against a real kube-apiserver and
// etcd (controller-runtime envtest), with the MutatingWebhookConfiguration from manifests/.
package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hubcache/hubcache/test/testenv"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

const (
	digest = "sha256:9f4a8d8a3b4c5d6e7f80910111213141516171819202122232425262728292a2"
	target = rewrite.DefaultTarget
)

func pod(name string, annotations map[string]string, images ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
	for i, img := range images {
		if strings.HasPrefix(img, "init:") {
			p.Spec.InitContainers = append(p.Spec.InitContainers,
				corev1.Container{Name: "init" + string(rune('a'+i)), Image: strings.TrimPrefix(img, "init:")})
			continue
		}
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "c" + string(rune('a'+i)), Image: img})
	}
	return p
}

// images lists a pod's images as "name=image", containers then init containers then
// ephemeral containers.
func images(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.Containers {
		out = append(out, c.Name+"="+c.Image)
	}
	for _, c := range p.Spec.InitContainers {
		out = append(out, c.Name+"="+c.Image)
	}
	for _, c := range p.Spec.EphemeralContainers {
		out = append(out, c.Name+"="+c.Image)
	}
	return out
}

func originalImages(t *testing.T, p *corev1.Pod) map[string]string {
	t.Helper()
	v, ok := p.Annotations[rewrite.AnnotationOriginalImages]
	if !ok {
		return nil
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		t.Fatalf("%s/%s annotation %s=%q: %v", p.Namespace, p.Name, rewrite.AnnotationOriginalImages, v, err)
	}
	return m
}

func TestWebhookEndToEnd(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()

	tests := []struct {
		name          string
		namespace     string
		pod           *corev1.Pod
		wantImages    []string
		wantOriginals map[string]string
		wantWarnings  []string
	}{
		{
			name:      "an enabled namespace rewrites containers and init containers and records the originals",
			namespace: nsEnabled,
			pod:       pod("app", nil, "nginx:1.27", "registry.k8s.io/pause:3.10", "init:busybox"),
			wantImages: []string{
				"ca=" + target + "/docker.io/library/nginx:1.27",
				"cb=registry.k8s.io/pause:3.10",
				"initc=" + target + "/docker.io/library/busybox:latest",
			},
			wantOriginals: map[string]string{"ca": "nginx:1.27", "initc": "busybox"},
		},
		{
			name:      "digest references and tag+digest references keep their digest",
			namespace: nsEnabled,
			pod:       pod("pinned", nil, "bitnami/redis@"+digest, "docker.io/library/nginx:1.27@"+digest, "init:index.docker.io/library/alpine:3.20@"+digest),
			wantImages: []string{
				"ca=" + target + "/docker.io/bitnami/redis@" + digest,
				"cb=" + target + "/docker.io/library/nginx:1.27@" + digest,
				"initc=" + target + "/docker.io/library/alpine:3.20@" + digest,
			},
			wantOriginals: map[string]string{
				"ca": "bitnami/redis@" + digest, "cb": "docker.io/library/nginx:1.27@" + digest,
				"initc": "index.docker.io/library/alpine:3.20@" + digest,
			},
		},
		{
			name:       "a pod annotated hubcache.io/skip keeps its images",
			namespace:  nsEnabled,
			pod:        pod("skipped", map[string]string{rewrite.AnnotationSkip: "true"}, "nginx:1.27", "init:busybox"),
			wantImages: []string{"ca=nginx:1.27", "initb=busybox"},
		},
		{
			name:      "other registries and already rewritten images are left alone",
			namespace: nsEnabled,
			pod: pod("others", nil, "ghcr.io/org/app:1", "quay.io/prometheus/node-exporter:v1", "localhost:5000/x:1",
				"myreg:5000/team/app:2", target+"/docker.io/library/nginx:1.27"),
			wantImages: []string{
				"ca=ghcr.io/org/app:1", "cb=quay.io/prometheus/node-exporter:v1", "cc=localhost:5000/x:1",
				"cd=myreg:5000/team/app:2", "ce=" + target + "/docker.io/library/nginx:1.27",
			},
		},
		{
			name:       "a dry-run namespace stores the pod unchanged and warns once per would-be rewrite",
			namespace:  nsDryRun,
			pod:        pod("app", nil, "nginx:1.27", "quay.io/a/b:1", "init:busybox"),
			wantImages: []string{"ca=nginx:1.27", "cb=quay.io/a/b:1", "initc=busybox"},
			wantWarnings: []string{
				`hubcache dry-run: container "ca" image "nginx:1.27" would become "127.0.0.1:5000/docker.io/library/nginx:1.27"`,
				`hubcache dry-run: initContainer "initc" image "busybox" would become "127.0.0.1:5000/docker.io/library/busybox:latest"`,
			},
		},
		{
			name:       "a namespace without the mode label is never sent to the webhook",
			namespace:  nsUnlabel,
			pod:        pod("app", nil, "nginx:1.27"),
			wantImages: []string{"ca=nginx:1.27"},
		},
		{
			name:       "hubcache's own namespace is excluded even when labelled enabled",
			namespace:  nsHubcache,
			pod:        pod("app", nil, "nginx:1.27"),
			wantImages: []string{"ca=nginx:1.27"},
		},
		{
			name:       "kube-system is excluded even when labelled enabled",
			namespace:  nsKube,
			pod:        pod("app", nil, "nginx:1.27"),
			wantImages: []string{"ca=nginx:1.27"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, w := c.clientWithWarnings(t)
			if _, err := cl.CoreV1().Pods(tt.namespace).Create(ctx, tt.pod, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s/%s: %v", tt.namespace, tt.pod.Name, err)
			}
			stored, err := c.client.CoreV1().Pods(tt.namespace).Get(ctx, tt.pod.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := images(stored); !slices.Equal(got, tt.wantImages) {
				t.Errorf("stored images\n%q\nwant\n%q", got, tt.wantImages)
			}
			if got := originalImages(t, stored); !equalMaps(got, tt.wantOriginals) {
				t.Errorf("stored %s = %v, want %v", rewrite.AnnotationOriginalImages, got, tt.wantOriginals)
			}
			if got := hubcacheWarnings(w.all()); !slices.Equal(got, tt.wantWarnings) {
				t.Errorf("warnings\n%q\nwant\n%q", got, tt.wantWarnings)
			}
		})
	}

	t.Run("an ephemeral container added through the subresource is rewritten", func(t *testing.T) {
		p := c.addEphemeral(t, nsEnabled, "app", "debugger", "busybox:1.36")
		if got := p.Spec.EphemeralContainers[0].Image; got != target+"/docker.io/library/busybox:1.36" {
			t.Errorf("stored ephemeral container image %q", got)
		}
		if got := originalImages(t, p); !equalMaps(got, map[string]string{"ca": "nginx:1.27", "initc": "busybox"}) {
			t.Errorf("the annotation changed through the ephemeralcontainers subresource: %v", got)
		}
		// A second one leaves the first, now immutable, alone.
		p = c.addEphemeral(t, nsEnabled, "app", "debugger2", "alpine")
		if got := images(p)[3:]; !slices.Equal(got, []string{
			"debugger=" + target + "/docker.io/library/busybox:1.36",
			"debugger2=" + target + "/docker.io/library/alpine:latest",
		}) {
			t.Errorf("ephemeral containers %q", got)
		}
	})

	t.Run("an ephemeral container in a dry-run namespace is unchanged and warned about", func(t *testing.T) {
		p := c.addEphemeral(t, nsDryRun, "app", "debugger", "busybox:1.36")
		if got := p.Spec.EphemeralContainers[0].Image; got != "busybox:1.36" {
			t.Errorf("dry-run changed the ephemeral container image to %q", got)
		}
	})

	t.Run("kubectl apply --dry-run=server shows the dry-run warnings", func(t *testing.T) {
		stdout, stderr := c.kubectlApplyDryRun(t, nsDryRun, "kubectl-web", "nginx:1.27", "")
		want := `Warning: hubcache dry-run: container "web" image "nginx:1.27" would become "127.0.0.1:5000/docker.io/library/nginx:1.27"`
		if !strings.Contains(stderr, want) {
			t.Errorf("kubectl stderr lacks\n%s\nstderr:\n%s\nstdout:\n%s", want, stderr, stdout)
		}
		if _, err := c.client.CoreV1().Pods(nsDryRun).Get(ctx, "kubectl-web", metav1.GetOptions{}); err == nil {
			t.Error("--dry-run=server created the pod")
		}
	})

	t.Run("kubectl apply --dry-run=server in an enabled namespace shows the rewritten image", func(t *testing.T) {
		stdout, stderr := c.kubectlApplyDryRun(t, nsEnabled, "kubectl-web", "nginx:1.27", "jsonpath={.spec.containers[0].image}")
		if want := target + "/docker.io/library/nginx:1.27"; stdout != want {
			t.Errorf("kubectl printed image %q, want %q (stderr %s)", stdout, want, stderr)
		}
	})
}

// addEphemeral adds an ephemeral container through the pods/ephemeralcontainers subresource,
// as `kubectl debug` does, and returns the stored pod.
func (c *cluster) addEphemeral(t *testing.T, namespace, podName, name, image string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	p, err := c.client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: name, Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		},
	})
	cl, w := c.clientWithWarnings(t)
	if _, err := cl.CoreV1().Pods(namespace).UpdateEphemeralContainers(ctx, podName, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("adding ephemeral container %s to %s/%s: %v", name, namespace, podName, err)
	}
	stored, err := c.client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var named bool
	for _, warning := range w.all() {
		named = named || strings.Contains(warning, `"`+name+`"`)
	}
	if !named {
		t.Errorf("no admission warning names ephemeral container %q: %q", name, w.all())
	}
	return stored
}

// kubectlApplyDryRun runs the real kubectl against the test API server.
func (c *cluster) kubectlApplyDryRun(t *testing.T, namespace, name, image, output string) (string, string) {
	t.Helper()
	if _, err := os.Stat(c.kubectl); err != nil {
		testenv.Missing(t, "kubectl in KUBEBUILDER_ASSETS", "make tools (hack/tools.sh envtest links kubectl)")
	}
	manifest := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\nspec:\n  containers:\n  - name: web\n    image: " + image + "\n"
	file := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--kubeconfig", c.kubeconfig, "apply", "--dry-run=server", "-n", namespace, "-f", file}
	if output != "" {
		args = append(args, "-o", output)
	}
	cmd := exec.Command(c.kubectl, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// hubcacheWarnings keeps the warnings hubcache sent, in order, dropping the API server's own.
func hubcacheWarnings(all []string) []string {
	var out []string
	for _, w := range all {
		if strings.HasPrefix(w, "hubcache") {
			out = append(out, w)
		}
	}
	return out
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
