package report

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

func TestCachedPodsListsOnlyContainersThatPointAtTheCache(t *testing.T) {
	rewritten := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop",
			Annotations: map[string]string{rewrite.AnnotationOriginalImages: `{"nginx":"nginx:1.27"}`}},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "nginx", Image: "127.0.0.1:5000/docker.io/library/nginx:1.27"}, {Name: "m", Image: "quay.io/x/y"}},
			InitContainers: []corev1.Container{{Name: "init", Image: "127.0.0.1:5000/docker.io/library/busybox:latest"}},
		},
	}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}}
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(rewritten, plain).Build()

	got, err := CachedPods(context.Background(), c, "", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []CachedImage{
		{Namespace: "shop", Pod: "web", Container: "nginx", ContainerType: rewrite.Container,
			Image: "127.0.0.1:5000/docker.io/library/nginx:1.27", Original: "nginx:1.27"},
		{Namespace: "shop", Pod: "web", Container: "init", ContainerType: rewrite.InitContainer,
			Image: "127.0.0.1:5000/docker.io/library/busybox:latest"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	var out bytes.Buffer
	if err := WriteCached(&out, FormatDiff, got); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "NAMESPACE") || !strings.Contains(out.String(), "nginx:1.27") {
		t.Errorf("table:\n%s", out.String())
	}

	got, err = CachedPods(context.Background(), c, "", "cache.example.com:5000")
	if err != nil || len(got) != 0 {
		t.Fatalf("another target: %v, %v; want none", got, err)
	}
	out.Reset()
	_ = WriteCached(&out, FormatDiff, got)
	if !strings.Contains(out.String(), "no live Pod points at the cache") {
		t.Errorf("empty table: %q", out.String())
	}
}
