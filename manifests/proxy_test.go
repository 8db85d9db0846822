package manifests

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func (r rendered) proxyDeployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	for _, d := range r.deployments {
		if d.Name == "hubcache-proxy" {
			return d
		}
	}
	t.Fatalf("no Deployment hubcache-proxy among %d deployments", len(r.deployments))
	return nil
}

func TestTheProxyDeploymentIsHighlyAvailableHardenedAndSharesFills(t *testing.T) {
	r := render(t)
	d := r.proxyDeployment(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v, want at least 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	podLabels := labels.Set(d.Spec.Template.Labels)
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("the proxy pod may run as root")
	}
	if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil || len(pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		t.Fatal("no pod anti-affinity between proxy replicas")
	}
	term := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector); err != nil || !sel.Matches(podLabels) || term.TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("the anti-affinity term does not spread the proxy pods over hosts (%v)", err)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("the proxy needs liveness and /readyz readiness probes")
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("the proxy's root filesystem is writable")
	}
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != "hubcache-storage" {
				t.Errorf("env %s comes from Secret %s, want hubcache-storage", e.Name, ref.Name)
			}
		}
		if e.Name == "POD_IP" && (e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP") {
			t.Error("POD_IP is not the pod's IP")
		}
	}
	for _, name := range []string{"POD_IP", "HUBCACHE_BLOB_STORE", "HUBCACHE_METADATA", "HUBCACHE_FILL_SECRET"} {
		if !env[name] {
			t.Errorf("no env %s", name)
		}
	}
	// Without --advertise-addr the other replicas reach this one on $POD_IP and the listen port.
	if got := flagValue(c, "--advertise-addr"); got != "" && !strings.HasPrefix(got, "$(POD_IP):") {
		t.Errorf("--advertise-addr=%q, want $(POD_IP):<port> or unset", got)
	}
	if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == "hubcache-upstream-auth" && v.Secret.Optional != nil && *v.Secret.Optional
	}) {
		t.Error("upstream credentials do not come from the optional Secret hubcache-upstream-auth")
	}

	svc := r.service(t, "hubcache-proxy")
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || !hasServicePort(svc, 5000) {
		t.Errorf("Service hubcache-proxy (selector %v) does not send port 5000 to the proxy pods", svc.Spec.Selector)
	}
	for _, p := range svc.Spec.Ports {
		if !hasPort(c, p.TargetPort.String()) {
			t.Errorf("Service port %s targets %s, which the container does not expose", p.Name, p.TargetPort.String())
		}
	}
	var covered bool
	for _, pdb := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err == nil && sel.Matches(podLabels) && pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.IntValue() >= 1 {
			covered = true
		}
	}
	if !covered {
		t.Error("no PodDisruptionBudget keeps a proxy pod up")
	}
	for _, ds := range r.daemonsets {
		for _, nc := range ds.Spec.Template.Spec.Containers {
			if p := flagValue(nc, "--proxy"); p != "https://hubcache-proxy.hubcache-system.svc:5000" {
				t.Errorf("DaemonSet %s forwards to %s, not to the proxy Service", ds.Name, p)
			}
		}
	}
}
