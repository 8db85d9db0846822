package manifests

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hubcache/hubcache/webhook/admission"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

const namespace = "hubcache-system"

// rendered holds the objects of manifests/production by kind, for the assertions below.
type rendered struct {
	namespaces   []*corev1.Namespace
	deployments  []*appsv1.Deployment
	daemonsets   []*appsv1.DaemonSet
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
	issuers      map[string]*certmanagerv1.Issuer
	certificates map[string]*certmanagerv1.Certificate
	mwcs         []*admissionregistrationv1.MutatingWebhookConfiguration
	all          []runtime.Object
}

func render(t *testing.T) rendered {
	t.Helper()
	objs, err := Objects("production")
	if err != nil {
		t.Fatalf("rendering manifests/production: %v", err)
	}
	r := rendered{issuers: map[string]*certmanagerv1.Issuer{}, certificates: map[string]*certmanagerv1.Certificate{}, all: objs}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Namespace:
			r.namespaces = append(r.namespaces, o)
		case *appsv1.Deployment:
			r.deployments = append(r.deployments, o)
		case *appsv1.DaemonSet:
			r.daemonsets = append(r.daemonsets, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *certmanagerv1.Issuer:
			r.issuers[o.Name] = o
		case *certmanagerv1.Certificate:
			r.certificates[o.Name] = o
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			r.mwcs = append(r.mwcs, o)
		}
	}
	return r
}

func (r rendered) webhookDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	for _, d := range r.deployments {
		if d.Name == "hubcache-webhook" {
			return d
		}
	}
	t.Fatalf("no Deployment hubcache-webhook among %d deployments", len(r.deployments))
	return nil
}

func (r rendered) webhookConfig(t *testing.T) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	if len(r.mwcs) != 1 {
		t.Fatalf("want exactly one MutatingWebhookConfiguration, got %d", len(r.mwcs))
	}
	return r.mwcs[0]
}

func TestEveryObjectDecodesStrictlyAndLivesInHubcacheSystem(t *testing.T) {
	r := render(t)
	if len(r.all) == 0 {
		t.Fatal("manifests/production renders no objects")
	}
	for _, o := range r.all {
		m, ok := o.(metav1.Object)
		if !ok {
			t.Fatalf("%T has no metadata", o)
		}
		if _, clusterScoped := o.(*corev1.Namespace); clusterScoped {
			continue
		}
		if _, clusterScoped := o.(*admissionregistrationv1.MutatingWebhookConfiguration); clusterScoped {
			continue
		}
		if m.GetNamespace() != namespace {
			t.Errorf("%T %s is in namespace %q, want %q", o, m.GetName(), m.GetNamespace(), namespace)
		}
	}
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	s, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	doc := []byte("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: x}\nspec: {secretName: x, dnsName: [a]}\n")
	if _, err := decodeStrict(s, doc); err == nil {
		t.Fatal("a Certificate with the misspelt field dnsName decoded without error")
	}
}

func TestTheNamespaceIsNeverSentToTheWebhook(t *testing.T) {
	r := render(t)
	var found bool
	for _, ns := range r.namespaces {
		if ns.Name != namespace {
			continue
		}
		found = true
		if mode, ok := ns.Labels[rewrite.LabelMode]; ok {
			t.Errorf("namespace %s has label %s=%q; hubcache must not depend on itself", namespace, rewrite.LabelMode, mode)
		}
	}
	if !found {
		t.Fatalf("namespace %s is not rendered", namespace)
	}
}

func TestTheWebhookDeploymentIsHardenedAndHighlyAvailable(t *testing.T) {
	r := render(t)
	d := r.webhookDeployment(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if len(pod.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints")
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("topology spread on %s does not select the webhook pods (%v)", tsc.TopologyKey, err)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
		t.Error("capabilities do not drop ALL")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe is not GET /healthz: %+v", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe is not GET /readyz: %+v", c.ReadinessProbe)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p != nil && p.HTTPGet != nil && !hasPort(c, p.HTTPGet.Port.String()) {
			t.Errorf("probe port %s is not a port of the container", p.HTTPGet.Port.String())
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "webhook" {
		t.Errorf("args %q do not start the webhook subcommand", c.Args)
	}
	for _, flag := range []string{"--listen", "--cert-dir", "--target", "--metrics-listen", "--health-listen"} {
		if flagValue(c, flag) == "" {
			t.Errorf("args %q and env do not set %s", c.Args, flag)
		}
	}
}

func TestHubcachesOwnImageNeverComesFromDockerHub(t *testing.T) {
	r := render(t)
	templates := map[string]corev1.PodSpec{}
	for _, d := range r.deployments {
		templates["Deployment "+d.Name] = d.Spec.Template.Spec
	}
	for _, d := range r.daemonsets {
		templates["DaemonSet "+d.Name] = d.Spec.Template.Spec
	}
	if len(templates) == 0 {
		t.Fatal("no workloads rendered")
	}
	for name, spec := range templates {
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			if !strings.HasPrefix(c.Image, "ghcr.io/hubcache/hubcache:") {
				t.Errorf("%s/%s image %q, want ghcr.io/hubcache/hubcache:<version>", name, c.Name, c.Image)
			}
			if dec := rewrite.Image(c.Image, rewrite.Policy{}); dec.Reason != rewrite.ReasonOtherRegistry {
				t.Errorf("%s/%s image %q: the plan says %q, want %q", name, c.Name, c.Image, dec.Reason, rewrite.ReasonOtherRegistry)
			}
		}
	}
}

func TestTheServiceAndPDBSelectTheWebhookPods(t *testing.T) {
	r := render(t)
	d := r.webhookDeployment(t)
	podLabels := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector does not match its own pods (%v)", err)
	}
	svc := r.service(t, "hubcache-webhook")
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not match the webhook pods %v", svc.Spec.Selector, podLabels)
	}
	for _, p := range svc.Spec.Ports {
		if !hasPort(d.Spec.Template.Spec.Containers[0], p.TargetPort.String()) {
			t.Errorf("Service port %s targets %s, which the container does not expose", p.Name, p.TargetPort.String())
		}
	}
	var covered bool
	for _, pdb := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err == nil && sel.Matches(podLabels) {
			covered = true
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 {
				t.Errorf("PDB %s lets every webhook pod go", pdb.Name)
			}
		}
	}
	if !covered {
		t.Error("no PodDisruptionBudget covers the webhook pods")
	}
}

func TestTheServingCertificateChainIsComplete(t *testing.T) {
	r := render(t)
	d := r.webhookDeployment(t)
	mwc := r.webhookConfig(t)
	ref := mwc.Annotations["cert-manager.io/inject-ca-from"]
	ns, name, ok := strings.Cut(ref, "/")
	if !ok || ns != namespace {
		t.Fatalf("cert-manager.io/inject-ca-from = %q, want %s/<certificate>", ref, namespace)
	}
	serving, ok := r.certificates[name]
	if !ok {
		t.Fatalf("inject-ca-from names Certificate %q, which is not rendered", name)
	}
	svc := r.service(t, "hubcache-webhook")
	for _, want := range []string{
		fmt.Sprintf("%s.%s.svc", svc.Name, namespace),
		fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, namespace),
	} {
		if !slices.Contains(serving.Spec.DNSNames, want) {
			t.Errorf("serving certificate dnsNames %q lack %q", serving.Spec.DNSNames, want)
		}
	}
	var mounted bool
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == serving.Spec.SecretName {
			for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
				if m.Name == v.Name && m.MountPath == argValue(d.Spec.Template.Spec.Containers[0].Args, "--cert-dir") && m.SubPath == "" {
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("Secret %s is not mounted (without subPath, so renewals reach the pod) at --cert-dir", serving.Spec.SecretName)
	}

	caIssuer, ok := r.issuers[serving.Spec.IssuerRef.Name]
	if !ok || serving.Spec.IssuerRef.Kind != "Issuer" || caIssuer.Spec.CA == nil {
		t.Fatalf("serving certificate is not issued by a rendered CA Issuer (issuerRef %+v)", serving.Spec.IssuerRef)
	}
	var ca *certmanagerv1.Certificate
	for _, c := range r.certificates {
		if c.Spec.SecretName == caIssuer.Spec.CA.SecretName {
			ca = c
		}
	}
	if ca == nil || !ca.Spec.IsCA {
		t.Fatalf("CA Issuer %s reads Secret %s, which no isCA Certificate writes", caIssuer.Name, caIssuer.Spec.CA.SecretName)
	}
	root, ok := r.issuers[ca.Spec.IssuerRef.Name]
	if !ok || root.Spec.SelfSigned == nil {
		t.Errorf("CA certificate %s is not issued by a rendered self-signed Issuer", ca.Name)
	}
}

func TestTheWebhookConfigurationFailsOpenFastAndOncePerMode(t *testing.T) {
	r := render(t)
	mwc := r.webhookConfig(t)
	svc := r.service(t, "hubcache-webhook")
	paths := map[string]string{
		string(admission.ModeEnabled): admission.PathMutate,
		string(admission.ModeDryRun):  admission.PathDryRun,
	}
	if len(mwc.Webhooks) != len(paths) {
		t.Fatalf("want %d webhook entries (one per mode), got %d", len(paths), len(mwc.Webhooks))
	}
	seen := map[string]bool{}
	for _, wh := range mwc.Webhooks {
		t.Run(wh.Name, func(t *testing.T) {
			if wh.FailurePolicy == nil || *wh.FailurePolicy != admissionregistrationv1.Ignore {
				t.Errorf("failurePolicy = %v, want Ignore", deref(wh.FailurePolicy))
			}
			if wh.TimeoutSeconds == nil || *wh.TimeoutSeconds > 3 || *wh.TimeoutSeconds < 1 {
				t.Errorf("timeoutSeconds = %v, want 1..3", deref(wh.TimeoutSeconds))
			}
			if wh.ReinvocationPolicy == nil || *wh.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
				t.Errorf("reinvocationPolicy = %v, want IfNeeded", deref(wh.ReinvocationPolicy))
			}
			if wh.SideEffects == nil || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone {
				t.Errorf("sideEffects = %v, want None", deref(wh.SideEffects))
			}
			if !slices.Equal(wh.AdmissionReviewVersions, []string{"v1"}) {
				t.Errorf("admissionReviewVersions = %q, want [v1]", wh.AdmissionReviewVersions)
			}
			s := wh.ClientConfig.Service
			if s == nil || wh.ClientConfig.URL != nil {
				t.Fatalf("clientConfig must name the Service, got %+v", wh.ClientConfig)
			}
			if s.Name != svc.Name || s.Namespace != namespace || s.Port == nil || !hasServicePort(svc, *s.Port) {
				t.Errorf("clientConfig.service %s/%s:%v does not match Service %s/%s", s.Namespace, s.Name, deref(s.Port), namespace, svc.Name)
			}

			mode := modeSelected(t, wh.NamespaceSelector)
			seen[mode] = true
			if want := paths[mode]; s.Path == nil || *s.Path != want {
				t.Errorf("mode %q is served on path %v, want %s", mode, deref(s.Path), want)
			}
			assertRules(t, wh.Rules)
		})
	}
	for mode := range paths {
		if !seen[mode] {
			t.Errorf("no webhook entry for mode %q", mode)
		}
	}
}

// modeSelected checks the namespaceSelector against labelled namespaces and returns the one
// mode it selects.
func modeSelected(t *testing.T, ls *metav1.LabelSelector) string {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatalf("namespaceSelector: %v", err)
	}
	nsLabels := func(name, mode string) labels.Set {
		l := labels.Set{"kubernetes.io/metadata.name": name}
		if mode != "" {
			l[rewrite.LabelMode] = mode
		}
		return l
	}
	var modes []string
	for _, mode := range []string{"enabled", "dry-run"} {
		if sel.Matches(nsLabels("apps", mode)) {
			modes = append(modes, mode)
		}
		for _, own := range []string{"kube-system", namespace} {
			if sel.Matches(nsLabels(own, mode)) {
				t.Errorf("namespace %s labelled %s=%s is sent to the webhook", own, rewrite.LabelMode, mode)
			}
		}
	}
	for _, other := range []string{"", "disabled", "Enabled"} {
		if sel.Matches(nsLabels("apps", other)) {
			t.Errorf("a namespace with mode label %q is sent to the webhook", other)
		}
	}
	if len(modes) != 1 {
		t.Fatalf("namespaceSelector selects modes %q, want exactly one", modes)
	}
	return modes[0]
}

func assertRules(t *testing.T, rules []admissionregistrationv1.RuleWithOperations) {
	t.Helper()
	got := map[string]bool{}
	for _, r := range rules {
		if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.APIVersions, []string{"v1"}) {
			t.Errorf("rule %+v is not for core/v1", r)
		}
		for _, op := range r.Operations {
			for _, res := range r.Resources {
				got[string(op)+" "+res] = true
			}
		}
	}
	want := map[string]bool{"CREATE pods": true, "UPDATE pods/ephemeralcontainers": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rules cover %v, want exactly %v", got, want)
	}
}

func (r rendered) service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	for _, s := range r.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

func hasServicePort(svc *corev1.Service, port int32) bool {
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

func hasPort(c corev1.Container, nameOrNumber string) bool {
	for _, p := range c.Ports {
		if p.Name == nameOrNumber || fmt.Sprint(p.ContainerPort) == nameOrNumber {
			return true
		}
	}
	return false
}

// argValue returns the value of --flag=value in args.
// flagValue is what a container sets a hubcache flag to: the argument, or else its HUBCACHE_…
// environment variable (the manifests set wired values through the environment).
func flagValue(c corev1.Container, flag string) string {
	if v := argValue(c.Args, flag); v != "" {
		return v
	}
	return envValue(c, "HUBCACHE_"+strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(flag, "--"), "-", "_")))
}

func argValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
