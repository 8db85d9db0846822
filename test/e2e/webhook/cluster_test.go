package webhook_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/hubcache/hubcache/manifests"
	"github.com/hubcache/hubcache/test/testenv"
	"github.com/hubcache/hubcache/webhook/admission"
	"github.com/hubcache/hubcache/webhook/rewrite"
	"github.com/hubcache/hubcache/webhook/visibility"
)

// Namespaces of the scenario, one per way a namespace can be set up.
const (
	nsEnabled  = "hc-enabled"
	nsDryRun   = "hc-dry-run"
	nsUnlabel  = "hc-unlabelled"
	nsHubcache = "hubcache-system" // labelled enabled on purpose: the selector must exclude it
	nsKube     = "kube-system"     // likewise
)

// cluster is a real kube-apiserver and etcd with hubcache's webhook installed from
// manifests/, served in-process by the same controller-runtime server the binary uses.
type cluster struct {
	env        *envtest.Environment
	cfg        *rest.Config
	client     kubernetes.Interface
	kubectl    string
	kubeconfig string
	stop       context.CancelFunc
	tempDirs   []string // kubeconfig and serving certificate, removed by TestMain
	// visibility stands in for the cache's visibility endpoint the webhook asks about Pods
	// with imagePullSecrets (see private_test.go).
	visibility *visibilityStub
}

// shared is started by the first test that needs it and stopped by TestMain: starting a
// control plane costs tens of seconds on a busy machine.
var shared struct {
	once sync.Once
	c    *cluster
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		shared.c.stop()
		if shared.c.visibility != nil {
			shared.c.visibility.close()
		}
		if err := shared.c.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
		for _, d := range shared.c.tempDirs {
			_ = os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// sharedCluster returns the running cluster, starting it on first use.
func sharedCluster(t *testing.T) *cluster {
	t.Helper()
	assets := testenv.Env(t, "KUBEBUILDER_ASSETS", "make tools (hack/tools.sh envtest builds kube-apiserver, etcd and links kubectl)")
	shared.once.Do(func() { shared.c, shared.err = startCluster(assets) })
	if shared.err != nil {
		t.Fatalf("starting the test cluster: %v", shared.err)
	}
	return shared.c
}

func startCluster(assets string) (*cluster, error) {
	// controller-runtime's webhook server logs through its global logger.
	ctrllog.SetLogger(logr.Discard())
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  60 * time.Second,
	}
	// envtest turns the ServiceAccount admission plugin off; hubcache needs it on, as in a
	// real cluster: it copies a ServiceAccount's imagePullSecrets into the pod before any
	// webhook runs. createNamespace creates the default ServiceAccount it then requires.
	env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("envtest: %w", err)
	}
	c := &cluster{env: env, cfg: cfg, kubectl: filepath.Join(assets, "kubectl")}
	ok := false
	defer func() {
		if !ok {
			if c.stop != nil {
				c.stop()
			}
			if c.visibility != nil {
				c.visibility.close()
			}
			_ = env.Stop()
			for _, d := range c.tempDirs {
				_ = os.RemoveAll(d)
			}
		}
	}()
	if c.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if err := c.writeKubeconfig(); err != nil {
		return nil, err
	}

	// A serving certificate for 127.0.0.1 and a free port, from envtest.
	serving := &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
	if err := serving.PrepWithoutInstalling(); err != nil {
		return nil, fmt.Errorf("webhook serving certificate: %w", err)
	}
	c.tempDirs = append(c.tempDirs, serving.LocalServingCertDir)
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	c.visibility = newVisibilityStub()
	if err := serveWebhook(ctx, serving, c.visibility.url()); err != nil {
		return nil, err
	}
	if err := c.installWebhookConfiguration(ctx, serving); err != nil {
		return nil, err
	}
	if err := c.createNamespaces(ctx); err != nil {
		return nil, err
	}
	if err := c.waitForWebhook(ctx); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func serveWebhook(ctx context.Context, serving *envtest.WebhookInstallOptions, visibilityURL string) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	vis, err := visibility.New(visibilityURL)
	if err != nil {
		return err
	}
	srv := webhook.NewServer(webhook.Options{
		Host:    serving.LocalServingHost,
		Port:    serving.LocalServingPort,
		CertDir: serving.LocalServingCertDir,
		TLSOpts: []func(*tls.Config){admission.ConfigureTLS},
	})
	if err := admission.Register(srv, rewrite.Policy{}, admission.WithLogger(log), admission.WithVisibility(vis)); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Start(ctx) }()
	started := srv.StartedChecker()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("webhook server stopped: %w", err)
		default:
		}
		if started(nil) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook server did not start within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// installWebhookConfiguration installs the MutatingWebhookConfiguration rendered from
// manifests/base, pointed at the in-process server: the test's own CA instead of
// cert-manager's injection, and a URL instead of the Service.
func (c *cluster) installWebhookConfiguration(ctx context.Context, serving *envtest.WebhookInstallOptions) error {
	objs, err := manifests.Objects("base")
	if err != nil {
		return err
	}
	var mwc *admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objs {
		if m, ok := o.(*admissionregistrationv1.MutatingWebhookConfiguration); ok {
			mwc = m.DeepCopy()
		}
	}
	if mwc == nil {
		return fmt.Errorf("manifests/base has no MutatingWebhookConfiguration")
	}
	for i := range mwc.Webhooks {
		cc := &mwc.Webhooks[i].ClientConfig
		if cc.Service == nil || cc.Service.Path == nil {
			return fmt.Errorf("webhook %s has no service path", mwc.Webhooks[i].Name)
		}
		url := fmt.Sprintf("https://%s:%d%s", serving.LocalServingHost, serving.LocalServingPort, *cc.Service.Path)
		cc.URL, cc.Service, cc.CABundle = &url, nil, serving.LocalServingCAData
	}
	delete(mwc.Annotations, "cert-manager.io/inject-ca-from")
	_, err = c.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{})
	return err
}

func (c *cluster) createNamespaces(ctx context.Context) error {
	for name, mode := range map[string]string{
		nsEnabled: "enabled", nsDryRun: "dry-run", nsUnlabel: "", nsHubcache: "enabled", nsKube: "enabled",
	} {
		if err := c.createNamespace(ctx, name, mode); err != nil {
			return err
		}
	}
	return nil
}

// createNamespace creates (or relabels) a namespace with the given mode label ("" for none)
// and its default ServiceAccount.
func (c *cluster) createNamespace(ctx context.Context, name, mode string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if mode != "" {
		ns.Labels[rewrite.LabelMode] = mode
	}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		existing, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if existing.Labels == nil {
			existing.Labels = map[string]string{}
		}
		existing.Labels[rewrite.LabelMode] = mode
		if _, err := c.client.CoreV1().Namespaces().Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	// envtest runs no controller-manager, so nothing creates the default ServiceAccount
	// that the ServiceAccount admission plugin requires of every pod.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: name}}
	if _, err := c.client.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the default ServiceAccount of %s: %w", name, err)
	}
	return nil
}

// waitForWebhook waits until the API server calls the webhook: it loads webhook
// configurations asynchronously. A server-side dry-run create shows the mutation.
func (c *cluster) waitForWebhook(ctx context.Context) error {
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := c.client.CoreV1().Pods(nsEnabled).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && got.Spec.Containers[0].Image != "nginx" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server did not call the webhook within 60s (last error: %v)", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) writeKubeconfig() error {
	user, err := c.env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("envtest user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "hubcache-e2e-")
	if err != nil {
		return err
	}
	c.tempDirs = append(c.tempDirs, dir)
	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	return os.WriteFile(c.kubeconfig, kc, 0o600)
}

// warnings records the admission warnings the API server sends back.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.list...)
}

// clientWithWarnings returns a client whose requests' warnings land in the returned recorder.
func (c *cluster) clientWithWarnings(t *testing.T) (kubernetes.Interface, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(c.cfg)
	cfg.WarningHandler = w
	cl, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, w
}
