package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hubcache/hubcache/test/fakehub"
)

// countingTransport counts the client's manifest GETs answered 200.
type countingTransport struct {
	next         http.RoundTripper
	manifestGETs atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") && resp.StatusCode == http.StatusOK {
		c.manifestGETs.Add(1)
	}
	return resp, err
}

// startProxy runs `hubcache proxy` on embedded storage until the test ends and returns its
// registry and metrics addresses once it is ready.
func startProxy(t *testing.T, hub *fakehub.Hub) (listen, ops string) {
	t.Helper()
	listen, ops = freeAddr(t), freeAddr(t)
	root := newRootCmd()
	root.SetArgs([]string{"proxy", "--listen", listen, "--metrics-listen", ops, "--data-dir", t.TempDir(),
		"--upstream", "docker.io=" + hub.URL(), "--docker-config", t.TempDir(), "--log-level", "error"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy exited with %v", err)
		}
	})
	for range 300 {
		resp, err := http.Get("http://" + ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return listen, ops
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("proxy never became ready")
	return "", ""
}

func TestReportCountsThePullsTheFakeHubNeverSaw(t *testing.T) {
	hub := fakehub.New(t)
	hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 2, 10_000, true))
	hub.Push(t, "library/app", "v2", fakehub.RandomImage(t, 1, 10_000, true))
	hub.Push(t, "acme/tool", "1.0", fakehub.RandomImage(t, 1, 10_000, true))
	hub.Push(t, "acme/tool", "2.0", fakehub.RandomImage(t, 1, 10_000, true))
	a, aOps := startProxy(t, hub)
	b, bOps := startProxy(t, hub)

	client := &countingTransport{next: http.DefaultTransport}
	pull := func(proxy, image string) {
		t.Helper()
		ref, err := name.ParseReference(proxy+"/docker.io/"+image, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref, remote.WithTransport(client))
		if err != nil {
			t.Fatalf("pulling %s through %s: %v", image, proxy, err)
		}
		fakehub.ReadAll(t, img)
	}
	// Cold on each replica, then warm: every replica fetches each tag upstream once.
	for range 3 {
		pull(a, "library/app:v1")
		pull(b, "library/app:v1")
	}
	pull(a, "library/app:v2")
	pull(a, "library/app:v2")
	pull(b, "acme/tool:1.0")
	// containerd's way, on a cold replica: the tag is resolved with a HEAD (the replica GETs
	// the manifest upstream to answer it), then the manifest is GET by digest (a hit). Docker
	// Hub counted that pull, so it is not one avoided.
	ref, err := name.ParseReference(a+"/docker.io/acme/tool:2.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithTransport(client))
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	if _, err := remote.Get(ref.Context().Digest(desc.Digest.String()), remote.WithTransport(client)); err != nil {
		t.Fatalf("GET %s by digest: %v", ref, err)
	}

	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"report", "--from", "http://" + aOps + "/metrics", "--from", "http://" + bOps + "/metrics", "-o", "json"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var r savingsReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("report JSON %q: %v", out.String(), err)
	}
	clientGETs := client.manifestGETs.Load()
	hubGETs := int64(hub.Counts().TotalManifestGET())
	t.Logf("client manifest GETs %d, fake hub manifest GETs %d, report %+v", clientGETs, hubGETs, r)
	if r.ManifestRequests != clientGETs {
		t.Errorf("manifest_requests = %d, the client made %d manifest GETs", r.ManifestRequests, clientGETs)
	}
	if r.UpstreamManifestGets != hubGETs {
		t.Errorf("upstream_manifest_gets = %d, the fake hub counted %d", r.UpstreamManifestGets, hubGETs)
	}
	if r.PullsAvoided != clientGETs-hubGETs || r.PullsAvoided <= 0 {
		t.Errorf("pulls_avoided = %d, want client GETs − hub GETs = %d", r.PullsAvoided, clientGETs-hubGETs)
	}
	// The per-request counter agrees with the difference.
	var counted float64
	for _, ops := range []string{aOps, bOps} {
		fams, err := scrape(context.Background(), http.DefaultClient, "http://"+ops+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		counted += sumMetric(fams, "hubcache_pulls_avoided_total", nil)
		if sumMetric(fams, "hubcache_build_info", map[string]string{"component": "proxy"}) != 1 ||
			fams["go_goroutines"] == nil || fams["process_cpu_seconds_total"] == nil {
			t.Errorf("%s lacks hubcache_build_info{component=proxy}, go_ or process_ metrics", ops)
		}
	}
	if int64(counted) != r.PullsAvoided {
		t.Errorf("hubcache_pulls_avoided_total sums to %v, the report says %d", counted, r.PullsAvoided)
	}
	if r.HitRatio <= 0 || r.HitRatio >= 1 {
		t.Errorf("hit_ratio = %v, want between 0 and 1 after cold and warm pulls", r.HitRatio)
	}
	if r.RatelimitRemaining == nil {
		t.Error("ratelimit_remaining is null although the fake hub announces it")
	}
	if len(r.TopImages) != 2 || r.TopImages[0].Repository != "docker.io/library/app" || r.TopImages[1].Repository != "docker.io/acme/tool" {
		t.Errorf("top_images = %+v, want library/app then acme/tool", r.TopImages)
	}
}

func TestReportPrintsATableAndRefusesAMissingReplica(t *testing.T) {
	metrics := `# TYPE hubcache_manifest_requests_total counter
hubcache_manifest_requests_total{result="ok"} 10
hubcache_manifest_requests_total{result="error"} 3
# TYPE hubcache_upstream_requests_total counter
hubcache_upstream_requests_total{method="GET",kind="manifest",result="ok"} 4
hubcache_upstream_requests_total{method="HEAD",kind="manifest",result="ok"} 7
hubcache_upstream_requests_total{method="GET",kind="manifest",result="unavailable"} 5
hubcache_upstream_requests_total{method="GET",kind="manifest",result="not_found"} 2
# TYPE hubcache_image_pulls_total counter
hubcache_image_pulls_total{repository="docker.io/library/nginx"} 10
`
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, metrics)
	})}
	addr := freeAddr(t)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetArgs([]string{"report", "--from", "http://" + addr + "/metrics"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Docker Hub pulls avoided  6", "docker.io/library/nginx  10", "Rate limit remaining      unknown"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}

	root = newRootCmd()
	root.SetOut(io.Discard)
	root.SetArgs([]string{"report", "--from", "http://" + addr + "/metrics", "--from", "http://" + addr + "/nothing"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "/nothing") {
		t.Errorf("a replica that does not answer gave %v, want an error naming it", err)
	}
}
