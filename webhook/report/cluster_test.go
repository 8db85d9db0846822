package report

import (
	"context"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// The listing logic (which objects, which owners hide which) is checked here against
// controller-runtime's in-memory client; test/e2e checks it against a real API server.
func TestListClusterReportsTopLevelObjectsOnce(t *testing.T) {
	yes := true
	owned := func(kind, name, uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID(uid), Controller: &yes}}
	}
	spec := func(image string) corev1.PodSpec {
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}
	}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{rewrite.LabelMode: "dry-run"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "d1"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec("nginx")}}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "r1", OwnerReferences: owned("Deployment", "web", "d1")},
			Spec: appsv1.ReplicaSetSpec{Template: corev1.PodTemplateSpec{Spec: spec("nginx")}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1-x", Namespace: "shop", UID: "p1", OwnerReferences: owned("ReplicaSet", "web-1", "r1")},
			Spec: spec("nginx")},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: "shop", UID: "p2", OwnerReferences: owned("Operator", "x", "gone")},
			Spec: spec("redis")},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "solo", Namespace: "plain", UID: "p3"}, Spec: spec("quay.io/a/b")},
	}
	b := fake.NewClientBuilder().WithScheme(scheme.Scheme)
	for _, o := range objs {
		b = b.WithObjects(o)
	}
	c := b.Build()

	es, modes, err := ListCluster(context.Background(), c, "", rewrite.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Namespace+"/"+e.Kind+"/"+e.Name+" "+string(e.Reason)+" mode="+e.Mode)
	}
	want := []string{
		"plain/Pod/solo not-docker-hub mode=",
		"shop/Deployment/web rewritten mode=dry-run",
		"shop/Pod/orphan rewritten mode=dry-run",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n%q\nwant\n%q", got, want)
	}
	if want := map[string]string{"shop": "dry-run", "plain": ""}; !reflect.DeepEqual(modes, want) {
		t.Errorf("modes = %v, want %v", modes, want)
	}

	es, modes, err = ListCluster(context.Background(), c, "plain", rewrite.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Name != "solo" || !reflect.DeepEqual(modes, map[string]string{"plain": ""}) {
		t.Errorf("namespace plain: entries %+v, modes %v", es, modes)
	}

	if _, _, err := ListCluster(context.Background(), c, "missing", rewrite.Policy{}); err == nil {
		t.Error("a missing namespace gave no error")
	}
}
