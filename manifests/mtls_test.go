package manifests

import (
	"net/url"
	"path"
	"slices"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// fillServerName is the default of the proxy's --fill-server-name: the name the replicas
// verify in each other's certificate.
const fillServerName = "hubcache-proxy"

// issuedFile follows a file flag of container c in pod to the Certificate whose Secret is
// mounted there, checking the file is one cert-manager writes.
func issuedFile(t *testing.T, objs []runtime.Object, who string, pod corev1.PodSpec, c corev1.Container, flag string) *certmanagerv1.Certificate {
	t.Helper()
	file := flagValue(c, flag)
	if file == "" {
		t.Errorf("%s: %s is not set", who, flag)
		return nil
	}
	if key := path.Base(file); key != "tls.crt" && key != "tls.key" && key != "ca.crt" {
		t.Errorf("%s: %s=%s is not a file cert-manager writes", who, flag, file)
	}
	var volume string
	for _, m := range c.VolumeMounts {
		if m.MountPath == path.Dir(file) {
			volume = m.Name
			if m.SubPath != "" {
				t.Errorf("%s: %s is mounted with subPath: renewals would never reach it", who, file)
			}
		}
	}
	var secret string
	for _, v := range pod.Volumes {
		if v.Name == volume && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if secret == "" {
		t.Errorf("%s: %s=%s is not in a mounted Secret", who, flag, file)
		return nil
	}
	cert, ok := find(objs, func(c *certmanagerv1.Certificate) bool { return c.Spec.SecretName == secret })
	if !ok {
		t.Errorf("%s: %s comes from Secret %s, which no Certificate issues (made by hand?)", who, flag, secret)
		return nil
	}
	return cert
}

func requireIssuedForUsages(t *testing.T, who string, cert *certmanagerv1.Certificate, usages ...certmanagerv1.KeyUsage) {
	t.Helper()
	if cert == nil {
		return
	}
	// The issuer of the webhook's serving certificate: one CA for all of hubcache.
	if cert.Spec.IssuerRef.Name != "hubcache-ca" || cert.Spec.IssuerRef.Kind != "Issuer" {
		t.Errorf("%s: Certificate %s is issued by %+v, want the Issuer hubcache-ca", who, cert.Name, cert.Spec.IssuerRef)
	}
	for _, u := range usages {
		if !slices.Contains(cert.Spec.Usages, u) {
			t.Errorf("%s: Certificate %s has usages %v, lacking %q", who, cert.Name, cert.Spec.Usages, u)
		}
	}
}

// podOf returns the pod spec and first container of a Deployment or DaemonSet.
func podOf(t *testing.T, objs []runtime.Object, kind, name string) (corev1.PodSpec, corev1.Container) {
	t.Helper()
	var pod corev1.PodSpec
	switch kind {
	case "Deployment":
		d, ok := find(objs, named[*appsv1.Deployment](name))
		if !ok {
			t.Fatalf("no Deployment %s", name)
		}
		pod = d.Spec.Template.Spec
	case "DaemonSet":
		d, ok := find(objs, named[*appsv1.DaemonSet](name))
		if !ok {
			t.Fatalf("no DaemonSet %s", name)
		}
		pod = d.Spec.Template.Spec
	}
	return pod, pod.Containers[0]
}

// requireMutualTLS checks, in objs, that only clients holding a certificate from hubcache-ca
// can use the proxy, and that the node entry points, the webhook and the replicas hold one.
func requireMutualTLS(t *testing.T, objs []runtime.Object) {
	t.Helper()
	pod, proxy := podOf(t, objs, "Deployment", "hubcache-proxy")
	serving := issuedFile(t, objs, "proxy", pod, proxy, "--tls-cert-file")
	if key := issuedFile(t, objs, "proxy", pod, proxy, "--tls-key-file"); serving != nil && key != serving {
		t.Errorf("proxy: the key and the certificate come from different Secrets")
	}
	requireIssuedForUsages(t, "proxy", issuedFile(t, objs, "proxy", pod, proxy, "--client-ca-file"))
	// The serving certificate is also each replica's client certificate towards the others.
	requireIssuedForUsages(t, "proxy", serving, certmanagerv1.UsageServerAuth, certmanagerv1.UsageClientAuth)
	if serving != nil {
		name := flagValue(proxy, "--fill-server-name")
		if name == "" {
			name = fillServerName
		}
		if !slices.Contains(serving.Spec.DNSNames, name) {
			t.Errorf("proxy: the replicas verify %q in each other's certificate, which names %v", name, serving.Spec.DNSNames)
		}
	}
	// Probes and metrics stay on their own plain-HTTP port.
	for _, p := range []*corev1.Probe{proxy.StartupProbe, proxy.LivenessProbe, proxy.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme == corev1.URISchemeHTTPS || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("proxy: probe %+v is not plain HTTP on the metrics port", p)
		}
	}

	for _, client := range []struct{ kind, name string }{{"DaemonSet", "hubcache-node"}, {"Deployment", "hubcache-webhook"}} {
		pod, c := podOf(t, objs, client.kind, client.name)
		u, err := url.Parse(flagValue(c, "--proxy"))
		if err != nil || u.Scheme != "https" {
			t.Errorf("%s: --proxy %q is not https", client.name, flagValue(c, "--proxy"))
			continue
		}
		if serving != nil && !slices.Contains(serving.Spec.DNSNames, u.Hostname()) {
			t.Errorf("%s: reaches the proxy as %s, which its certificate (%v) does not name", client.name, u.Hostname(), serving.Spec.DNSNames)
		}
		cert := issuedFile(t, objs, client.name, pod, c, "--proxy-cert-file")
		requireIssuedForUsages(t, client.name, cert, certmanagerv1.UsageClientAuth)
		if key := issuedFile(t, objs, client.name, pod, c, "--proxy-key-file"); cert != nil && key != cert {
			t.Errorf("%s: the key and the certificate come from different Secrets", client.name)
		}
		// ca.crt of any hubcache-ca Secret is that CA.
		requireIssuedForUsages(t, client.name, issuedFile(t, objs, client.name, pod, c, "--proxy-ca-file"))
	}
}

func TestOnlyTheNodesTheWebhookAndTheReplicasCanUseTheProxy(t *testing.T) {
	for _, o := range Overlays {
		t.Run(o, func(t *testing.T) {
			objs, err := Objects(o)
			if err != nil {
				t.Fatal(err)
			}
			requireMutualTLS(t, objs)
		})
	}
}
