package webhook_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hubcache/hubcache/webhook/report"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

// TestDiffClusterMatchesWebhook checks that the report behind `hubcache diff --cluster`, run
// against the same API server, says exactly what the webhook decided: in an enabled namespace
// every image the webhook rewrote (the keys of hubcache.io/original-images) is reported
// "already-rewritten" and nothing is left to change; in a dry-run namespace the would-be
// rewrites are exactly the ones the webhook warned about.
func TestDiffClusterMatchesWebhook(t *testing.T) {
	c := sharedCluster(t)
	ctx := context.Background()
	const enabled, dryRun = "hc-diff-enabled", "hc-diff-dry-run"
	for ns, mode := range map[string]string{enabled: "enabled", dryRun: "dry-run"} {
		if err := c.createNamespace(ctx, ns, mode); err != nil {
			t.Fatal(err)
		}
	}
	pods := []*corev1.Pod{
		pod("mixed", nil, "nginx:1.27", "quay.io/prometheus/node-exporter:v1", "bitnami/redis@"+digest, "init:busybox"),
		pod("pinned", nil, "docker.io/library/alpine:3.20@"+digest),
		pod("skipped", map[string]string{rewrite.AnnotationSkip: "true"}, "nginx:1.27"),
		pod("elsewhere", nil, "ghcr.io/org/app:1", "registry.k8s.io/pause:3.10"),
	}

	// What the webhook did: in enabled, the stored pods; in dry-run, the warnings.
	rewrittenByWebhook := map[string]bool{} // "name/container"
	var warned []string
	for _, ns := range []string{enabled, dryRun} {
		cl, w := c.clientWithWarnings(t)
		for _, p := range pods {
			if _, err := cl.CoreV1().Pods(ns).Create(ctx, p.DeepCopy(), metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating %s/%s: %v", ns, p.Name, err)
			}
			if ns == enabled {
				stored, err := c.client.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				for container := range originalImages(t, stored) {
					rewrittenByWebhook[p.Name+"/"+container] = true
				}
			}
		}
		if ns == dryRun {
			warned = hubcacheWarnings(w.all())
		}
	}
	if len(rewrittenByWebhook) == 0 || len(warned) == 0 {
		t.Fatalf("the webhook did nothing: rewritten %v, warned %q", rewrittenByWebhook, warned)
	}

	reader, err := client.New(c.cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("enabled namespace: the rewritten images and nothing left to change", func(t *testing.T) {
		entries, modes, err := report.ListCluster(ctx, reader, enabled, rewrite.Policy{})
		if err != nil {
			t.Fatal(err)
		}
		if modes[enabled] != "enabled" {
			t.Errorf("mode of %s reported as %q", enabled, modes[enabled])
		}
		alreadyRewritten := map[string]bool{}
		for _, e := range entries {
			if e.Changed() {
				t.Errorf("the report would still change %s/%s %s: %s → %s", e.Kind, e.Name, e.Container, e.Original, e.Rewritten)
			}
			if e.Reason == rewrite.ReasonAlreadyRewritten {
				alreadyRewritten[e.Name+"/"+e.Container] = true
			}
		}
		if fmt.Sprint(alreadyRewritten) != fmt.Sprint(rewrittenByWebhook) {
			t.Errorf("report says already rewritten: %v\nthe webhook rewrote:       %v", alreadyRewritten, rewrittenByWebhook)
		}
	})

	t.Run("dry-run namespace: exactly the rewrites the webhook warned about", func(t *testing.T) {
		entries, modes, err := report.ListCluster(ctx, reader, dryRun, rewrite.Policy{})
		if err != nil {
			t.Fatal(err)
		}
		if modes[dryRun] != "dry-run" {
			t.Errorf("mode of %s reported as %q", dryRun, modes[dryRun])
		}
		var reported []string
		for _, e := range entries {
			if e.Changed() {
				// The webhook's warning text for the same decision.
				reported = append(reported, fmt.Sprintf("hubcache dry-run: %s %q image %q would become %q",
					e.ContainerType, e.Container, e.Original, e.Rewritten))
			}
		}
		slices.Sort(reported)
		slices.Sort(warned)
		if !slices.Equal(reported, warned) {
			t.Errorf("report:\n%q\nwebhook warnings:\n%q", reported, warned)
		}
	})

	t.Run("--cached lists the rewritten images of the enabled namespace and none of dry-run", func(t *testing.T) {
		cached, err := report.CachedPods(ctx, reader, enabled, "")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, ci := range cached {
			got[ci.Pod+"/"+ci.Container] = true
		}
		if fmt.Sprint(got) != fmt.Sprint(rewrittenByWebhook) {
			t.Errorf("--cached lists %v\nthe webhook rewrote %v", got, rewrittenByWebhook)
		}
		cached, err = report.CachedPods(ctx, reader, dryRun, "")
		if err != nil || len(cached) != 0 {
			t.Errorf("dry-run namespace: %v, %v; want none", cached, err)
		}
	})
}
