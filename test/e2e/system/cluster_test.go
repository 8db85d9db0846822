package system

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/hubcache/hubcache/manifests"
	"github.com/hubcache/hubcache/test/testenv"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

// overlay is the kustomization whose MutatingWebhookConfiguration the test installs: the
// production one (S3 + Postgres + replicas), the setup this test mirrors.
const overlay = "production"

// controlPlane is a real kube-apiserver and etcd (envtest) with an admin kubeconfig, the one
// the kubelet and `hubcache diff --cluster` use.
type controlPlane struct {
	cfg        *rest.Config
	client     kubernetes.Interface
	kubeconfig string
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	assets := testenv.Env(t, "KUBEBUILDER_ASSETS", "make tools (hack/tools.sh envtest builds kube-apiserver, etcd and links kubectl)")
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  60 * time.Second,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	cp := &controlPlane{cfg: cfg}
	if cp.client, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "hubcache-e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("admin user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	cp.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(cp.kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp
}

// webhookServing is a serving certificate for 127.0.0.1 and a free port, from envtest.
func webhookServing(t *testing.T) *envtest.WebhookInstallOptions {
	t.Helper()
	serving := &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
	if err := serving.PrepWithoutInstalling(); err != nil {
		t.Fatalf("webhook serving certificate: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(serving.LocalServingCertDir) })
	return serving
}

// installWebhookConfiguration installs the MutatingWebhookConfiguration rendered from
// manifests/, unchanged but for how the API server reaches the webhook: a URL on loopback
// instead of the Service, and the test's CA instead of cert-manager's injection. Rules,
// namespace selector, failure policy and timeout are the shipped ones.
func (cp *controlPlane) installWebhookConfiguration(t *testing.T, serving *envtest.WebhookInstallOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	objs, err := manifests.Objects(overlay)
	if err != nil {
		t.Fatalf("rendering manifests/%s: %v", overlay, err)
	}
	var mwc *admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objs {
		if m, ok := o.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
			mwc = m.DeepCopy()
		}
	}
	if mwc == nil {
		t.Fatalf("manifests/%s has no MutatingWebhookConfiguration", overlay)
	}
	for i := range mwc.Webhooks {
		cc := &mwc.Webhooks[i].ClientConfig
		if cc.Service == nil || cc.Service.Path == nil {
			t.Fatalf("webhook %s has no service path", mwc.Webhooks[i].Name)
		}
		url := fmt.Sprintf("https://%s:%d%s", serving.LocalServingHost, serving.LocalServingPort, *cc.Service.Path)
		cc.URL, cc.Service, cc.CABundle = &url, nil, serving.LocalServingCAData
	}
	delete(mwc.Annotations, "cert-manager.io/inject-ca-from")
	created, err := cp.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(context.Background(), mwc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("installing the MutatingWebhookConfiguration: %v", err)
	}
	return created
}

// createNamespace creates a namespace labelled with mode and its default ServiceAccount:
// envtest runs no controller-manager, and the ServiceAccount admission plugin requires it.
func (cp *controlPlane) createNamespace(t *testing.T, name, mode string) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{rewrite.LabelMode: mode}}}
	if _, err := cp.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := cp.client.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the default ServiceAccount of %s: %v", name, err)
	}
}

// waitForWebhook waits until the API server calls the webhook (it loads webhook
// configurations asynchronously): a server-side dry-run create in ns shows the rewrite.
func (cp *controlPlane) waitForWebhook(t *testing.T, ns string) {
	t.Helper()
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "probe:1"}}},
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := cp.client.CoreV1().Pods(ns).Create(context.Background(), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Spec.Containers[0].Image != "probe:1" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server did not call the webhook within 60s (last error: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// warnings records the admission warnings the API server sends back to a client.
type warnings struct{ list []string }

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) { w.list = append(w.list, text) }

// clientWithWarnings returns a client whose requests' warnings land in the returned recorder.
func (cp *controlPlane) clientWithWarnings(t *testing.T) (kubernetes.Interface, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(cp.cfg)
	cfg.WarningHandler = w
	cl, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, w
}
