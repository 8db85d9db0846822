package report

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hubcache/hubcache/webhook/manifest"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

// kindRank orders kinds in a cluster report: controllers before what they create.
func kindRank(kind string) int {
	switch kind {
	case "CronJob":
		return 0
	case "Deployment":
		return 1
	case "StatefulSet":
		return 2
	case "DaemonSet":
		return 3
	case "ReplicaSet":
		return 4
	case "ReplicationController":
		return 5
	case "Job":
		return 6
	}
	return 7
}

// ListCluster runs the plan over the live Pods and workloads of namespace ("" for all
// namespaces) and returns the entries plus each namespace's hubcache.io/mode label ("" when
// the namespace has none).
//
// An object whose controller (owner reference with controller: true) is itself listed is
// left out: its pods come from that controller's template, so counting both would report
// every image twice (Deployment → ReplicaSet → Pod, CronJob → Job → Pod). What is reported is
// the top-most listed owner, which is what a user would change. Pods created directly, and
// pods whose controller is of a kind not listed here, are reported themselves.
//
// c needs the core, apps and batch types in its scheme (client-go's scheme.Scheme has them).
func ListCluster(ctx context.Context, c client.Reader, namespace string, p rewrite.Policy) ([]Entry, map[string]string, error) {
	ws, modes, err := ClusterWorkloads(ctx, c, namespace)
	if err != nil {
		return nil, nil, err
	}
	return WithModes(Entries(ws, p), modes), modes, nil
}

// ClusterWorkloads lists what ListCluster reports on, in its order, with each namespace's
// hubcache.io/mode label; the caller plans them (with visibility answers, for instance).
func ClusterWorkloads(ctx context.Context, c client.Reader, namespace string) ([]manifest.Workload, map[string]string, error) {
	modes, err := namespaceModes(ctx, c, namespace)
	if err != nil {
		return nil, nil, err
	}
	ws, err := listWorkloads(ctx, c, namespace)
	if err != nil {
		return nil, nil, err
	}
	listed := map[string]bool{}
	for _, w := range ws {
		listed[w.UID] = true
	}
	var top []manifest.Workload
	for _, w := range ws {
		if !ownedByListed(w, listed) {
			top = append(top, w)
		}
	}
	sort.SliceStable(top, func(i, j int) bool {
		a, b := top[i], top[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return kindRank(a.Kind) < kindRank(b.Kind)
		}
		return a.Name < b.Name
	})
	return top, modes, nil
}

// WithModes sets each entry's Mode from its namespace's label.
func WithModes(es []Entry, modes map[string]string) []Entry {
	for i := range es {
		es[i].Mode = modes[es[i].Namespace]
	}
	return es
}

func ownedByListed(w manifest.Workload, listed map[string]bool) bool {
	for _, o := range w.Owners {
		if o.Controller != nil && *o.Controller && listed[string(o.UID)] {
			return true
		}
	}
	return false
}

// namespaceModes reads the hubcache.io/mode label of the namespaces in scope. A user who may
// not read namespaces still gets a report, without modes.
func namespaceModes(ctx context.Context, c client.Reader, namespace string) (map[string]string, error) {
	modes := map[string]string{}
	if namespace != "" {
		var ns corev1.Namespace
		err := c.Get(ctx, client.ObjectKey{Name: namespace}, &ns)
		switch {
		case apierrors.IsForbidden(err):
			return modes, nil
		case err != nil:
			return nil, fmt.Errorf("reading namespace %s: %w", namespace, err)
		}
		modes[namespace] = ns.Labels[rewrite.LabelMode]
		return modes, nil
	}
	var list corev1.NamespaceList
	err := c.List(ctx, &list)
	switch {
	case apierrors.IsForbidden(err):
		return modes, nil
	case err != nil:
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	for _, ns := range list.Items {
		modes[ns.Name] = ns.Labels[rewrite.LabelMode]
	}
	return modes, nil
}

// listWorkloads lists every kind that carries a pod template, plus Pods.
func listWorkloads(ctx context.Context, c client.Reader, namespace string) ([]manifest.Workload, error) {
	var (
		pods  corev1.PodList
		rcs   corev1.ReplicationControllerList
		deps  appsv1.DeploymentList
		stss  appsv1.StatefulSetList
		dss   appsv1.DaemonSetList
		rss   appsv1.ReplicaSetList
		jobs  batchv1.JobList
		crons batchv1.CronJobList
	)
	lists := []struct {
		what  string
		list  client.ObjectList
		items func() []any
	}{
		{"pods", &pods, func() []any { return pointers(pods.Items) }},
		{"replicationcontrollers", &rcs, func() []any { return pointers(rcs.Items) }},
		{"deployments", &deps, func() []any { return pointers(deps.Items) }},
		{"statefulsets", &stss, func() []any { return pointers(stss.Items) }},
		{"daemonsets", &dss, func() []any { return pointers(dss.Items) }},
		{"replicasets", &rss, func() []any { return pointers(rss.Items) }},
		{"jobs", &jobs, func() []any { return pointers(jobs.Items) }},
		{"cronjobs", &crons, func() []any { return pointers(crons.Items) }},
	}
	var out []manifest.Workload
	for _, l := range lists {
		if err := c.List(ctx, l.list, client.InNamespace(namespace)); err != nil {
			return nil, fmt.Errorf("listing %s: %w", l.what, err)
		}
		for _, obj := range l.items() {
			if w, ok := manifest.FromObject(obj); ok {
				out = append(out, w)
			}
		}
	}
	return out, nil
}

// pointers returns a pointer to every item, the form manifest.FromObject takes.
func pointers[T any](items []T) []any {
	out := make([]any, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}
