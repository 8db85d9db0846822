package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hubcache/hubcache/webhook/visibility"
)

// visibilityStub answers as the proxy's visibility endpoint (contract): docker.io/acme/*
// is private and not served, everything else public and served. It records every question.
type visibilityStub struct {
	srv   *httptest.Server
	mu    sync.Mutex
	asked [][]string
}

func newVisibilityStub() *visibilityStub {
	s := &visibilityStub{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != visibility.Path {
			http.NotFound(w, r)
			return
		}
		repos := r.URL.Query()["repository"]
		s.mu.Lock()
		s.asked = append(s.asked, repos)
		s.mu.Unlock()
		type item struct {
			Repository string `json:"repository"`
			Visibility string `json:"visibility"`
			Served     bool   `json:"served"`
		}
		var out struct {
			Repositories []item `json:"repositories"`
		}
		for _, repo := range repos {
			if strings.HasPrefix(repo, "docker.io/acme/") {
				out.Repositories = append(out.Repositories, item{repo, "private", false})
			} else {
				out.Repositories = append(out.Repositories, item{repo, "public", true})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	return s
}

func (s *visibilityStub) url() string { return s.srv.URL }
func (s *visibilityStub) close()      { s.srv.Close() }

// askedAbout reports whether some question named repo.
func (s *visibilityStub) askedAbout(repo string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.asked {
		if slices.Contains(q, repo) {
			return true
		}
	}
	return false
}

func TestPrivateImagesOfPodsWithPullSecretsStayThroughTheAPIServer(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	wantImages := []string{
		"ca=docker.io/acme/billing:4.2",
		"cb=" + target + "/docker.io/library/nginx:1.27",
	}
	check := func(t *testing.T, p *corev1.Pod, warnings []string) {
		t.Helper()
		if got := images(p); !slices.Equal(got, wantImages) {
			t.Errorf("images %v, want %v", got, wantImages)
		}
		if got := originalImages(t, p); len(got) != 1 || got["cb"] != "nginx:1.27" {
			t.Errorf("original images %v, want only cb", got)
		}
		found := false
		for _, w := range warnings {
			found = found || strings.Contains(w, `"docker.io/acme/billing:4.2" left unchanged: private-repository`)
		}
		if !found {
			t.Errorf("no warning about the private image: %q", warnings)
		}
	}

	t.Run("a Pod with a pull secret keeps its private image and gets its public image rewritten", func(t *testing.T) {
		p := pod("secret-pod", nil, "docker.io/acme/billing:4.2", "nginx:1.27")
		p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "hub"}}
		cl, w := c.clientWithWarnings(t)
		got, err := cl.CoreV1().Pods(nsEnabled).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		check(t, got, w.all())
		if !c.visibility.askedAbout("docker.io/acme/billing") {
			t.Error("the webhook did not ask the cache")
		}
	})

	t.Run("a Pod whose ServiceAccount has pull secrets is treated the same", func(t *testing.T) {
		sa := &corev1.ServiceAccount{
			ObjectMeta:       metav1.ObjectMeta{Name: "puller", Namespace: nsEnabled},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "hub"}},
		}
		if _, err := c.client.CoreV1().ServiceAccounts(nsEnabled).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := pod("sa-pod", nil, "docker.io/acme/billing:4.2", "nginx:1.27")
		p.Spec.ServiceAccountName = "puller"
		cl, w := c.clientWithWarnings(t)
		got, err := cl.CoreV1().Pods(nsEnabled).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.ImagePullSecrets) != 1 {
			t.Fatalf("the ServiceAccount plugin did not add the pull secret: %+v", got.Spec.ImagePullSecrets)
		}
		check(t, got, w.all())
	})

	t.Run("a Pod without pull secrets is rewritten as before", func(t *testing.T) {
		got, err := c.client.CoreV1().Pods(nsEnabled).Create(ctx, pod("plain-acme", nil, "docker.io/acme/tool:1"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"ca=" + target + "/docker.io/acme/tool:1"}; !slices.Equal(images(got), want) {
			t.Errorf("images %v, want %v", images(got), want)
		}
	})
}
