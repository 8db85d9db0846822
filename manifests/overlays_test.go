package manifests

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// monitored is an overlay as a user writes it to add monitoring to production.
var monitored = map[string][]byte{
	"monitored/kustomization.yaml": []byte(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../production
components:
  - ../components/monitoring
`),
}

// moved is an overlay that installs on top of base another namespace and other ports, the
// way docs/install.md says to.
func moved(base string) map[string][]byte {
	return map[string][]byte{
		"moved/kustomization.yaml": []byte(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: cache-ops
resources:
  - ../` + base + `
components:
  - ../components/monitoring
patches:
  - patch: |-
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: hubcache-settings
      data:
        proxy-port: "5100"
        node-port: "5200"
transformers:
  - ../components/wiring
`),
	}
}

// allOverlays renders every installable overlay, and production with monitoring.
func allOverlays(t *testing.T) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	for _, o := range Overlays {
		docs, err := Render(o)
		if err != nil {
			t.Fatalf("rendering %s: %v", o, err)
		}
		out[o] = docs
	}
	docs, err := RenderWith("monitored", monitored)
	if err != nil {
		t.Fatalf("rendering production with monitoring: %v", err)
	}
	out["production+monitoring"] = docs
	return out
}

func TestEveryOverlayDecodesStrictlyWithItsOwnTypes(t *testing.T) {
	for name, docs := range allOverlays(t) {
		objs, err := Decode(name, docs)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, o := range objs {
			if u, ok := o.(*runtime.Unknown); ok {
				t.Errorf("%s: %s decoded to no Go type", name, u.TypeMeta)
			}
			m, _ := o.(metav1.Object)
			switch o.(type) {
			case *corev1.Namespace, *admissionregistrationv1.MutatingWebhookConfiguration:
			default:
				if m == nil || m.GetNamespace() != namespace {
					t.Errorf("%s: %T %s is in namespace %q, want %s", name, o, m.GetName(), m.GetNamespace(), namespace)
				}
			}
		}
	}
}

func TestTheSettingsConfigMapIsNeverApplied(t *testing.T) {
	for name, docs := range allOverlays(t) {
		for _, d := range docs {
			if strings.Contains(string(d), "name: hubcache-settings") {
				t.Errorf("%s renders the local-config ConfigMap hubcache-settings", name)
			}
		}
	}
}

func objectsOf(t *testing.T, name string, docs [][]byte) []runtime.Object {
	t.Helper()
	objs, err := Decode(name, docs)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find[T runtime.Object](objs []runtime.Object, match func(T) bool) (T, bool) {
	for _, o := range objs {
		if v, ok := o.(T); ok && match(v) {
			return v, true
		}
	}
	var zero T
	return zero, false
}

func named[T interface{ GetName() string }](name string) func(T) bool {
	return func(v T) bool { return v.GetName() == name }
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func TestAnOverlayWithAnotherNamespaceAndPortsLeavesNoStaleReference(t *testing.T) {
	portPattern := regexp.MustCompile(`\b5000\b`)
	for _, base := range Overlays {
		t.Run(base, func(t *testing.T) {
			docs, err := RenderWith("moved", moved(base))
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range docs {
				if strings.Contains(string(d), "hubcache-system") {
					t.Errorf("stale namespace in:\n%s", d)
				}
				if portPattern.Match(d) {
					t.Errorf("stale port 5000 in:\n%s", d)
				}
			}
			objs := objectsOf(t, "moved", docs)

			ns, ok := find(objs, named[*corev1.Namespace]("cache-ops"))
			if !ok {
				t.Fatal("no Namespace cache-ops")
			}
			if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
				t.Errorf("namespace labels %v do not admit the node's host network", ns.Labels)
			}
			ds, ok := find(objs, named[*appsv1.DaemonSet]("hubcache-node"))
			if !ok {
				t.Fatal("no DaemonSet hubcache-node")
			}
			node := ds.Spec.Template.Spec.Containers[0]
			if got := envValue(node, "HUBCACHE_PROXY"); got != "https://hubcache-proxy.cache-ops.svc:5100" {
				t.Errorf("node HUBCACHE_PROXY = %q", got)
			}
			if got := envValue(node, "HUBCACHE_LISTEN"); got != "127.0.0.1:5200" {
				t.Errorf("node HUBCACHE_LISTEN = %q", got)
			}
			wh, ok := find(objs, named[*appsv1.Deployment]("hubcache-webhook"))
			if !ok {
				t.Fatal("no Deployment hubcache-webhook")
			}
			if got := envValue(wh.Spec.Template.Spec.Containers[0], "HUBCACHE_TARGET"); got != "127.0.0.1:5200" {
				t.Errorf("webhook HUBCACHE_TARGET = %q, want the node's 127.0.0.1:5200", got)
			}
			if got := envValue(wh.Spec.Template.Spec.Containers[0], "HUBCACHE_PROXY"); got != "https://hubcache-proxy.cache-ops.svc:5100" {
				t.Errorf("webhook HUBCACHE_PROXY = %q, want the proxy Service", got)
			}
			proxy, ok := find(objs, named[*appsv1.Deployment]("hubcache-proxy"))
			if !ok {
				t.Fatal("no Deployment hubcache-proxy")
			}
			pc := proxy.Spec.Template.Spec.Containers[0]
			if got := envValue(pc, "HUBCACHE_LISTEN"); got != ":5100" {
				t.Errorf("proxy HUBCACHE_LISTEN = %q", got)
			}
			if !slices.ContainsFunc(pc.Ports, func(p corev1.ContainerPort) bool { return p.Name == "registry" && p.ContainerPort == 5100 }) {
				t.Errorf("proxy container ports %v lack registry 5100", pc.Ports)
			}
			svc, ok := find(objs, named[*corev1.Service]("hubcache-proxy"))
			if !ok {
				t.Fatal("no Service hubcache-proxy")
			}
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "registry" && p.Port == 5100 }) {
				t.Errorf("proxy Service ports %v lack registry 5100", svc.Spec.Ports)
			}
			mwc, ok := find(objs, named[*admissionregistrationv1.MutatingWebhookConfiguration]("hubcache"))
			if !ok {
				t.Fatal("no MutatingWebhookConfiguration")
			}
			if got := mwc.Annotations["cert-manager.io/inject-ca-from"]; got != "cache-ops/hubcache-webhook" {
				t.Errorf("inject-ca-from = %q", got)
			}
			for _, w := range mwc.Webhooks {
				if w.ClientConfig.Service == nil || w.ClientConfig.Service.Namespace != "cache-ops" {
					t.Errorf("webhook %s calls %+v", w.Name, w.ClientConfig.Service)
				}
				if !slices.ContainsFunc(w.NamespaceSelector.MatchExpressions, func(e metav1.LabelSelectorRequirement) bool {
					return e.Key == "kubernetes.io/metadata.name" && slices.Contains(e.Values, "cache-ops")
				}) {
					t.Errorf("webhook %s does not exclude its own namespace: %+v", w.Name, w.NamespaceSelector)
				}
			}
			cert, ok := find(objs, named[*certmanagerv1.Certificate]("hubcache-webhook"))
			if !ok {
				t.Fatal("no Certificate hubcache-webhook")
			}
			if !slices.Contains(cert.Spec.DNSNames, "hubcache-webhook.cache-ops.svc") {
				t.Errorf("certificate names %v", cert.Spec.DNSNames)
			}
			// Mutual TLS with the proxy: its certificate names the moved Service, which the
			// node and the webhook reach (requireMutualTLS checks the URLs against it).
			proxyCert, ok := find(objs, named[*certmanagerv1.Certificate]("hubcache-proxy"))
			if !ok {
				t.Fatal("no Certificate hubcache-proxy")
			}
			for _, want := range []string{"hubcache-proxy", "hubcache-proxy.cache-ops", "hubcache-proxy.cache-ops.svc", "hubcache-proxy.cache-ops.svc.cluster.local"} {
				if !slices.Contains(proxyCert.Spec.DNSNames, want) {
					t.Errorf("proxy certificate names %v, lacking %s", proxyCert.Spec.DNSNames, want)
				}
			}
			requireMutualTLS(t, objs)
		})
	}
}

func TestWithoutTheWiringAMovedOverlayKeepsStaleReferences(t *testing.T) {
	// The check above must be able to fail: the same overlay minus the wiring leaves the old
	// namespace in strings (URLs, DNS names, annotations).
	files := moved("quickstart")
	files["moved/kustomization.yaml"] = []byte(strings.Replace(string(files["moved/kustomization.yaml"]),
		"transformers:\n  - ../components/wiring\n", "", 1))
	var stale bool
	for _, d := range mustRender(t, "moved", files) {
		stale = stale || strings.Contains(string(d), "hubcache-system")
	}
	if !stale {
		t.Error("without the wiring no stale reference is left, so the test above proves nothing")
	}
}

func TestQuickstartNeedsNoSecretAndKeepsItsCacheOnAVolume(t *testing.T) {
	objs, err := Objects("quickstart")
	if err != nil {
		t.Fatal(err)
	}
	// Secrets cert-manager issues exist once cert-manager runs; anything else must be optional.
	issued := map[string]bool{}
	for _, o := range objs {
		if c, ok := o.(*certmanagerv1.Certificate); ok {
			issued[c.Spec.SecretName] = true
		}
	}
	for _, o := range objs {
		var pod corev1.PodSpec
		var name string
		switch o := o.(type) {
		case *appsv1.Deployment:
			pod, name = o.Spec.Template.Spec, o.Name
		case *appsv1.DaemonSet:
			pod, name = o.Spec.Template.Spec, o.Name
		default:
			continue
		}
		for _, c := range pod.Containers {
			for _, e := range c.Env {
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && (r.SecretKeyRef.Optional == nil || !*r.SecretKeyRef.Optional) {
					t.Errorf("%s needs Secret %s (env %s)", name, r.SecretKeyRef.Name, e.Name)
				}
			}
		}
		for _, v := range pod.Volumes {
			if s := v.Secret; s != nil && !issued[s.SecretName] && (s.Optional == nil || !*s.Optional) {
				t.Errorf("%s needs Secret %s (volume %s)", name, s.SecretName, v.Name)
			}
		}
	}
	proxy, ok := find(objs, named[*appsv1.Deployment]("hubcache-proxy"))
	if !ok {
		t.Fatal("no proxy")
	}
	if proxy.Spec.Replicas == nil || *proxy.Spec.Replicas != 1 || proxy.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("the embedded-storage proxy must be one replica replaced with Recreate, got %v replicas, %s", proxy.Spec.Replicas, proxy.Spec.Strategy.Type)
	}
	var claim string
	for _, v := range proxy.Spec.Template.Spec.Volumes {
		if v.Name == "data" && v.PersistentVolumeClaim != nil && v.EmptyDir == nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	if _, ok := find(objs, named[*corev1.PersistentVolumeClaim](claim)); claim == "" || !ok {
		t.Errorf("the data volume is not the rendered PersistentVolumeClaim (%q)", claim)
	}
	for _, e := range proxy.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "HUBCACHE_BLOB_STORE" || e.Name == "HUBCACHE_METADATA" {
			t.Errorf("quickstart proxy sets %s: it runs on embedded storage", e.Name)
		}
	}
	if _, ok := find(objs, named[*policyv1.PodDisruptionBudget]("hubcache-proxy")); ok {
		t.Error("a budget of minAvailable 1 on a single replica blocks every node drain")
	}
}

func TestTheNamespaceAdmitsTheNodeOnTheHostNetwork(t *testing.T) {
	for _, o := range Overlays {
		objs, err := Objects(o)
		if err != nil {
			t.Fatal(err)
		}
		ds, _ := find(objs, named[*appsv1.DaemonSet]("hubcache-node"))
		ns, ok := find(objs, named[*corev1.Namespace](namespace))
		if !ok || ds == nil {
			t.Fatalf("%s: no namespace or node DaemonSet", o)
		}
		if ds.Spec.Template.Spec.HostNetwork && ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
			t.Errorf("%s: the node uses the host network; namespace enforce label %q rejects it", o, ns.Labels["pod-security.kubernetes.io/enforce"])
		}
	}
}

func TestTheNodeMetricsAreScrapeableWhereThePodMonitorLooks(t *testing.T) {
	objs, err := Decode("monitored", mustRender(t, "monitored", monitored))
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := find(objs, named[*appsv1.DaemonSet]("hubcache-node"))
	listen := envValue(ds.Spec.Template.Spec.Containers[0], "HUBCACHE_METRICS_LISTEN")
	host, port, err := net.SplitHostPort(listen)
	if err != nil || host == "127.0.0.1" || host == "localhost" {
		t.Fatalf("node metrics listen on %q: Prometheus cannot reach loopback", listen)
	}
	pm, ok := find(objs, named[*monitoringv1.PodMonitor]("hubcache-node"))
	if !ok {
		t.Fatal("no PodMonitor hubcache-node")
	}
	if pn := pm.Spec.PodMetricsEndpoints[0].PortNumber; pn == nil || fmt.Sprint(*pn) != port {
		t.Errorf("PodMonitor scrapes port %v, node metrics listen on %s", pn, port)
	}
	for _, name := range []string{"hubcache-proxy", "hubcache-webhook"} {
		pm, ok := find(objs, named[*monitoringv1.PodMonitor](name))
		if !ok {
			t.Fatalf("no PodMonitor %s", name)
		}
		d, _ := find(objs, named[*appsv1.Deployment](name))
		port := pm.Spec.PodMetricsEndpoints[0].Port
		if port == nil || !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.Name == *port }) {
			t.Errorf("PodMonitor %s scrapes port %v, which %s does not declare", name, port, name)
		}
	}
}

func TestTheAlertsCoverEveryWayTheCacheStopsSaving(t *testing.T) {
	objs, err := Decode("monitored", mustRender(t, "monitored", monitored))
	if err != nil {
		t.Fatal(err)
	}
	rule, ok := find(objs, named[*monitoringv1.PrometheusRule]("hubcache"))
	if !ok {
		t.Fatal("no PrometheusRule")
	}
	var alerts []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
		}
	}
	for _, want := range []string{"HubcacheProxyDown", "HubcacheStoreDown", "HubcacheUpstreamErrors", "HubcacheRateLimitLow", "HubcacheServingStale", "HubcacheNodeInFallback"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s among %v", want, alerts)
		}
	}
	cm, ok := find(objs, named[*corev1.ConfigMap]("hubcache-dashboard"))
	if !ok {
		t.Fatal("no dashboard ConfigMap")
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["hubcache.json"]), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if cm.Labels["grafana_dashboard"] != "1" || len(dash.Panels) == 0 {
		t.Errorf("dashboard %q with %d panels, labels %v", dash.Title, len(dash.Panels), cm.Labels)
	}
	var pullsAvoided bool
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			pullsAvoided = pullsAvoided || strings.Contains(tg.Expr, "hubcache_pulls_avoided_total")
		}
	}
	if !pullsAvoided {
		t.Error("the dashboard does not show Docker Hub pulls avoided")
	}
}

func mustRender(t *testing.T, dir string, extra map[string][]byte) [][]byte {
	t.Helper()
	docs, err := RenderWith(dir, extra)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}
