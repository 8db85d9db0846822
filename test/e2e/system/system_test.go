// Package system runs the whole of hubcache the way a cluster runs it, with a real kubelet:
//
//	kubectl-like client ─▶ kube-apiserver ─▶ hubcache webhook (TLS) rewrites the Pod's images
//	kubelet ─▶ its containerd ─▶ hubcache node on 127.0.0.1 ─▶ "Service" ─▶ 2 hubcache proxies
//	                                                             (MinIO + Postgres) ─▶ fake Docker Hub
//
// Every box is a real process or server: kube-apiserver and etcd (envtest), the hubcache binary
// built by the test (webhook, node, two proxies), MinIO, Postgres, containerd and the kubelet
// v1.37. Only Docker Hub is a stand-in (test/fakehub), so the test can count what hubcache
// asks of it and switch it off. Nothing on the node is configured for hubcache: containerd has
// no registry or mirror setting, and the kubelet pulls the rewritten reference with its own,
// unchanged pull.
//
// TestSystem is one story in steps (dry-run, enabled, cached, Docker Hub down, webhook down,
// proxies down, a private image) run one after the other: a machine runs one kubelet at a
// time. It prints a timeline of what happened and what Docker Hub counted, so a failure reads
// like a story.
//
// The fake Docker Hub is reachable under Docker Hub's own name too (dockerHubRoute), so what
// the webhook leaves alone is pulled by the kubelet exactly as without hubcache.
package system

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/hubcache/hubcache/test/containerd"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/kubelet"
	"github.com/hubcache/hubcache/test/pgtest"
	"github.com/hubcache/hubcache/test/s3server"
	"github.com/hubcache/hubcache/test/testenv"
	"github.com/hubcache/hubcache/webhook/report"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

const (
	nsDryRun  = "e2e-dry-run"
	nsEnabled = "e2e-enabled"
	nodeName  = "hubcache-e2e-node"
	fillKey   = "hubcache-e2e-fill-secret"

	// The private repository on the fake Docker Hub and the account that can read it.
	privateRepo = "acme/e2e-private"
	hubUser     = "acme"
	hubPassword = "e2e-s3cret"
)

// system is every running part of the test.
type system struct {
	cp      *controlPlane
	hub     *fakehub.Hub
	proxies []*proxyProcess
	// serviceURL is the proxies' "Service", the node entry point's --proxy.
	serviceURL string
	node       *process
	nodeAddr   string // the rewrite target: 127.0.0.1:PORT
	nodeOps    string
	webhook    *process
	kubelet    *kubelet.Kubelet
	// route makes the fake hub Docker Hub for the kubelet's containerd.
	route *dockerHubRoute
	// kubeletPulls counts the kubelet's pulls through hubcache of the step 2–3 image and
	// upstreamGets the manifest GETs Docker Hub served for them: the report's inputs.
	kubeletPulls, upstreamGets int
	tl                         *timeline
}

type proxyProcess struct {
	*process
	addr, ops string
}

// image is one image on the fake Docker Hub.
type image struct {
	short     string // what a Pod says, e.g. "e2e-app:1"
	repo      string // the hub's repository, e.g. "library/e2e-app"
	key       string // the hub's manifest counter key, e.g. "library/e2e-app:1"
	blobs     []v1.Hash
	rewritten string // what the webhook makes of it
}

func TestSystem(t *testing.T) {
	testenv.Root(t)
	ctx := t.Context()
	s := &system{}
	s.tl = newTimeline(t)

	// The parts, in the order a cluster would have them.
	s.cp = startControlPlane(t)
	s.tl.add("setup", "kube-apiserver and etcd up")
	bin := buildHubcache(t)
	s.hub = fakehub.New(t, fakehub.WithPrivateRepositories(hubUser, hubPassword, privateRepo))
	s.tl.hub = s.hub
	s.route = startDockerHubRoute(t, s.hub.URL())
	idle := kubelet.IdleBinary(t)
	s.nodeAddr = freePort(t)
	app := s.pushImage(t, idle, "library/e2e-app", "1")
	uncached := s.pushImage(t, idle, "library/e2e-uncached", "1")
	fallback := s.pushImage(t, idle, "library/e2e-fallback", "1")
	private := s.pushImage(t, idle, privateRepo, "1")
	sidecar := s.pushImage(t, idle, "library/e2e-sidecar", "1")

	s.startProxies(t, bin)
	s.startNode(t, bin)
	serving := webhookServing(t)
	health := freePort(t)
	s.webhook = startProcess(t, "webhook", bin, "http://"+health+"/readyz", nil, "webhook",
		"--listen="+fmt.Sprintf("%s:%d", serving.LocalServingHost, serving.LocalServingPort),
		"--cert-dir="+serving.LocalServingCertDir,
		"--target="+s.nodeAddr,
		// As in manifests/: the webhook asks the proxies' Service about Pods with pull secrets.
		"--proxy="+s.serviceURL,
		"--metrics-listen="+freePort(t),
		"--health-listen="+health)
	mwc := s.cp.installWebhookConfiguration(t, serving)
	s.cp.createNamespace(t, nsDryRun, "dry-run")
	s.cp.createNamespace(t, nsEnabled, "enabled")
	s.cp.waitForWebhook(t, nsEnabled)
	s.tl.add("setup", "webhook %s (manifests/%s: failurePolicy %s, timeout %ds), node entry point on %s, 2 proxies on MinIO + Postgres",
		mwc.Name, overlay, *mwc.Webhooks[0].FailurePolicy, *mwc.Webhooks[0].TimeoutSeconds, s.nodeAddr)
	s.kubelet = kubelet.Start(t, s.cp.kubeconfig, nodeName, containerd.WithEnv(s.route.Env...))
	s.tl.add("setup", "kubelet registered node %s (containerd %s, pause image %s; Docker Hub's names lead to the fake hub)",
		nodeName, s.kubelet.Containerd.Version, s.kubelet.PauseImage)
	s.hub.Reset()

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"1 dry-run namespace: stored unchanged, warned, diff agrees", func(t *testing.T) { s.dryRun(ctx, t, bin, app) }},
		{"2 enabled namespace: rewritten, pulled through hubcache, Ready", func(t *testing.T) { s.enabled(ctx, t, app) }},
		{"3 image removed from the node: pulled again with no upstream GET, report agrees", func(t *testing.T) { s.cached(ctx, t, bin, app) }},
		{"4 Docker Hub down: cached image starts, uncached one fails clearly", func(t *testing.T) { s.hubDown(ctx, t, app, uncached) }},
		{"5 webhook down: Pods admitted unchanged", func(t *testing.T) { s.webhookDown(ctx, t, app) }},
		{"6 both proxies down: the node falls back to Docker Hub", func(t *testing.T) { s.proxiesDown(ctx, t, fallback) }},
		{"7 private image with a pull secret: straight from Docker Hub, public one through hubcache", func(t *testing.T) { s.privateImage(ctx, t, private, sidecar) }},
	}
	for _, st := range steps {
		// Each step builds on the one before: stop at the first failure.
		if !t.Run(st.name, st.run) {
			break
		}
	}
}

// pushImage puts a runnable image (the idle program) on the fake Docker Hub as REPO:TAG and
// returns how Pods and the hub name it.
func (s *system) pushImage(t *testing.T, idle, repo, tag string) image {
	t.Helper()
	img := kubelet.BinaryImage(t, idle, "app", repo+":"+tag)
	s.hub.Push(t, repo, tag, img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blobs := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest)
	}
	return image{
		short:     strings.TrimPrefix(repo, "library/") + ":" + tag,
		repo:      repo,
		key:       repo + ":" + tag,
		blobs:     blobs,
		rewritten: s.nodeAddr + "/docker.io/" + repo + ":" + tag,
	}
}

// startProxies starts two proxy replicas sharing one MinIO bucket and one Postgres schema,
// and the "Service" in front of them.
func (s *system) startProxies(t *testing.T, bin string) {
	t.Helper()
	s3 := s3server.Start(t, s3server.MinIO)
	dsn, _ := pgtest.Schema(t, "hubcache_e2e_")
	env := append(s3.Env(), "HUBCACHE_FILL_SECRET="+fillKey)
	var addrs []string
	for i := range 2 {
		addr, ops := freePort(t), freePort(t)
		p := startProcess(t, fmt.Sprintf("proxy-%d", i), bin, "http://"+ops+"/readyz", env, "proxy",
			"--listen="+addr,
			"--metrics-listen="+ops,
			"--advertise-addr="+addr,
			"--data-dir="+t.TempDir(),
			"--upstream=docker.io="+s.hub.URL(),
			"--blob-store="+s3.URL("e2e"),
			"--metadata="+dsn,
			// Every tag pull asks Docker Hub with a free HEAD, so step 4 shows stale-if-error.
			"--tag-ttl=0s")
		s.proxies = append(s.proxies, &proxyProcess{process: p, addr: addr, ops: ops})
		addrs = append(addrs, addr)
	}
	svc := startService(t, addrs...)
	s.tl.add("setup", "proxies on %s behind a round-robin Service %s", strings.Join(addrs, ", "), svc.URL())
	s.serviceURL = svc.URL()
}

// startNode starts the node entry point on the rewrite target's loopback port, forwarding to
// the Service and falling back to the fake Docker Hub after one failed connection.
func (s *system) startNode(t *testing.T, bin string) {
	t.Helper()
	s.nodeOps = freePort(t)
	s.node = startProcess(t, "node", bin, "http://"+s.nodeOps+"/readyz", nil, "node",
		"--listen="+s.nodeAddr,
		"--metrics-listen="+s.nodeOps,
		"--proxy="+s.serviceURL,
		"--upstream=docker.io="+s.hub.URL(),
		"--proxy-timeout=5s",
		"--fallback-after=1",
		"--probe-interval=1s")
}

// createPod creates p in ns and returns what the API server stored.
func (s *system) createPod(ctx context.Context, t *testing.T, ns string, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got, err := s.cp.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, p.Name, err)
	}
	return got
}

// runPod creates a Pod bound to the kubelet in the enabled namespace and waits until it is
// Ready; it checks that the webhook rewrote the image.
func (s *system) runPod(ctx context.Context, t *testing.T, name string, img image, pull corev1.PullPolicy) *corev1.Pod {
	t.Helper()
	stored := s.createPod(ctx, t, nsEnabled, testPod(name, nodeName, img.short, pull))
	if got := stored.Spec.Containers[0].Image; got != img.rewritten {
		t.Fatalf("pod %s stored with image %q, want the rewrite %q", name, got, img.rewritten)
	}
	start := time.Now()
	ready, err := waitReady(ctx, s.cp.client, nsEnabled, name)
	if err != nil {
		t.Fatalf("%v\nnode log:\n%s", err, s.node.log())
	}
	s.tl.add("", "pod %s Ready %s after create, running %s", name, time.Since(start).Round(100*time.Millisecond), ready.Status.ContainerStatuses[0].ImageID)
	return ready
}

// waitPulled waits for the kubelet's "Pulled" event of a Pod: proof that it pulled (rather
// than found the image present) when the pull policy or a removed image makes it pull.
func (s *system) waitPulled(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !hasEvent(ctx, s.cp.client, nsEnabled, name, "Pulled", "Successfully pulled") {
		if time.Now().After(deadline) {
			t.Fatalf("no Pulled event for pod %s; events:\n%s", name, eventLines(s.cp.client, nsEnabled, name))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// proxySum adds up a metric over both proxy replicas.
func (s *system) proxySum(t *testing.T, metric string, labels ...string) float64 {
	t.Helper()
	var sum float64
	for _, p := range s.proxies {
		v, err := metricSum("http://"+p.ops+"/metrics", metric, labels...)
		if err != nil {
			t.Fatalf("metrics of %s: %v", p.name, err)
		}
		sum += v
	}
	return sum
}

// 1. A namespace in dry-run: the Pod is stored as written, the create returns one warning per
// would-be rewrite, and `hubcache diff --cluster` lists the same rewrites.
func (s *system) dryRun(ctx context.Context, t *testing.T, bin string, app image) {
	cl, w := s.cp.clientWithWarnings(t)
	p := testPod("dry-run", "", app.short, "")
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:1.37"}}
	stored, err := cl.CoreV1().Pods(nsDryRun).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the dry-run pod: %v", err)
	}
	if stored.Spec.Containers[0].Image != app.short || stored.Spec.InitContainers[0].Image != "busybox:1.37" {
		t.Errorf("dry-run pod stored with images %q, %q; want them unchanged", stored.Spec.Containers[0].Image, stored.Spec.InitContainers[0].Image)
	}
	if _, ok := stored.Annotations[rewrite.AnnotationOriginalImages]; ok {
		t.Errorf("dry-run pod carries %s", rewrite.AnnotationOriginalImages)
	}
	var warned []string
	for _, m := range w.list {
		if strings.HasPrefix(m, "hubcache dry-run:") {
			warned = append(warned, m)
		}
	}
	if len(warned) != 2 {
		t.Errorf("warnings %q, want one per image (2)", w.list)
	}

	out, code := runDiff(t, bin, s.cp.kubeconfig, nsDryRun, s.nodeAddr)
	if code != 1 {
		t.Errorf("hubcache diff --cluster exited %d, want 1 (changes)\n%s", code, out)
	}
	var entries []report.Entry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("hubcache diff -o json: %v\n%s", err, out)
	}
	var reported []string
	for _, e := range entries {
		if e.Changed() {
			reported = append(reported, fmt.Sprintf("hubcache dry-run: %s %q image %q would become %q",
				e.ContainerType, e.Container, e.Original, e.Rewritten))
		}
	}
	slices.Sort(reported)
	slices.Sort(warned)
	if !slices.Equal(reported, warned) {
		t.Errorf("hubcache diff --cluster reports\n%q\nthe webhook warned\n%q", reported, warned)
	}
	if c := s.hub.Counts(); c.TotalManifestGET()+c.TotalManifestHEAD() != 0 {
		t.Errorf("Docker Hub was asked for manifests in dry-run: %v", c.ManifestGET)
	}
	s.tl.add("1", "dry-run pod stored unchanged; %d warnings; diff --cluster lists the same %d rewrites", len(warned), len(reported))
}

// runDiff runs `hubcache diff --cluster -o json` against the test's API server.
func runDiff(t *testing.T, bin, kubeconfig, ns, target string) ([]byte, int) {
	t.Helper()
	cmd := exec.Command(bin, "diff", "--cluster", "--kubeconfig="+kubeconfig, "-n", ns, "-o", "json", "--target="+target)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		if exit.ExitCode() == 2 {
			t.Fatalf("hubcache diff --cluster failed: %s", stderr.String())
		}
		return out, exit.ExitCode()
	case err != nil:
		t.Fatalf("hubcache diff --cluster: %v", err)
	}
	return out, 0
}

// 2. An enabled namespace: the Pod is stored rewritten, the kubelet pulls the rewritten
// reference through node → proxy → Docker Hub and the container runs. Docker Hub served the
// manifest and each blob exactly once, though two replicas served the pull.
func (s *system) enabled(ctx context.Context, t *testing.T, app image) {
	s.hub.Reset()
	s.runPod(ctx, t, "first", app, "")
	stored, err := s.cp.client.CoreV1().Pods(nsEnabled).Get(ctx, "first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if orig := stored.Annotations[rewrite.AnnotationOriginalImages]; !strings.Contains(orig, app.short) {
		t.Errorf("annotation %s = %q, want the original %q", rewrite.AnnotationOriginalImages, orig, app.short)
	}
	c := s.hub.Counts()
	if c.ManifestGET[app.key] != 1 || c.TotalManifestGET() != 1 {
		t.Errorf("Docker Hub manifest GETs %v, want exactly one of %s", c.ManifestGET, app.key)
	}
	for _, b := range app.blobs {
		if c.BlobGET[b.String()] != 1 {
			t.Errorf("Docker Hub served blob %s %d times, want once", b, c.BlobGET[b.String()])
		}
	}
	if c.TotalBlobGET() != len(app.blobs) {
		t.Errorf("Docker Hub blob GETs %v, want one per blob of the image (%d)", c.BlobGET, len(app.blobs))
	}
	s.kubeletPulls++
	s.upstreamGets += c.TotalManifestGET()
	s.tl.add("2", "pod rewritten to %s, pulled through node → proxies → hub", app.rewritten)
}

// 3. The image is removed from the node (CRI RemoveImage, as image garbage collection would)
// and a new Pod uses it: the kubelet pulls again, and the cache answers without a single
// upstream GET (a HEAD to revalidate the tag is free on Docker Hub). `hubcache report` then
// says how many Docker Hub pulls the cache avoided, and the fake hub confirms the figure: a
// node without hubcache (a fresh containerd pulling docker.io/… by Docker Hub's name) costs
// it N manifest GETs per pull, so the kubelet's pulls would have cost N each; the cache made
// Docker Hub serve only the GETs counted in steps 2 and 3.
func (s *system) cached(ctx context.Context, t *testing.T, bin string, app image) {
	if err := deleteAndWait(ctx, s.cp.client, nsEnabled, "first"); err != nil {
		t.Fatal(err)
	}
	if err := s.kubelet.Images.RemoveImage(ctx, app.rewritten); err != nil {
		t.Fatal(err)
	}
	if st, err := s.kubelet.Images.ImageStatus(ctx, app.rewritten); err != nil || st != nil {
		t.Fatalf("after RemoveImage containerd still has %s: %v, %v", app.rewritten, st, err)
	}
	s.tl.add("3", "pod first deleted, image removed from containerd")
	s.hub.Reset()
	hitsBefore := s.proxySum(t, "hubcache_cache_hits_total", `kind="manifest"`)
	s.runPod(ctx, t, "second", app, "")
	s.waitPulled(ctx, t, "second")
	c := s.hub.Counts()
	if c.TotalManifestGET() != 0 || c.TotalBlobGET() != 0 {
		t.Errorf("Docker Hub saw GETs for a cached image: manifests %v, blobs %v", c.ManifestGET, c.BlobGET)
	}
	hits := s.proxySum(t, "hubcache_cache_hits_total", `kind="manifest"`) - hitsBefore
	if hits < 1 {
		t.Errorf("the proxies answered no manifest from the cache (hits %v): the pull did not go through them", hits)
	}
	s.kubeletPulls++
	s.upstreamGets += c.TotalManifestGET()
	s.tl.add("3", "pulled again: %v manifest requests answered from the cache, 0 upstream GETs", hits)

	r := s.report(t, bin)
	perPull := s.directPullGets(ctx, t, app)
	without := s.kubeletPulls * perPull
	if r.ManifestRequests != without {
		t.Errorf("report: %d client manifest GETs; the kubelet's %d pulls would have made Docker Hub serve %d (%d each)",
			r.ManifestRequests, s.kubeletPulls, without, perPull)
	}
	if r.UpstreamManifestGets != s.upstreamGets {
		t.Errorf("report: %d upstream manifest GETs; the fake hub served %d", r.UpstreamManifestGets, s.upstreamGets)
	}
	if want := without - s.upstreamGets; r.PullsAvoided != want || want < 1 {
		t.Errorf("report: %d Docker Hub pulls avoided; the fake hub says %d (%d without the cache − %d served)",
			r.PullsAvoided, want, without, s.upstreamGets)
	}
	// The counter behind the dashboard follows the same difference per replica: its sum is
	// the report's figure, or more while an upstream GET made on one replica has not been
	// matched by a client GET on it (a pull whose HEAD and GET went to different replicas).
	counter := int(s.proxySum(t, "hubcache_pulls_avoided_total"))
	if counter < r.PullsAvoided || counter > r.PullsAvoided+s.upstreamGets {
		t.Errorf("hubcache_pulls_avoided_total sums to %d over the replicas, want %d (up to %d)", counter, r.PullsAvoided, r.PullsAvoided+s.upstreamGets)
	}
	s.tl.add("3", "hubcache report: %d Docker Hub pulls avoided (%d client manifest GETs − %d upstream); the hub: a direct pull costs %d manifest GET, %d pulls − %d served = %d; counter sum %d",
		r.PullsAvoided, r.ManifestRequests, r.UpstreamManifestGets, perPull, s.kubeletPulls, s.upstreamGets, without-s.upstreamGets, counter)
}

// savings is the part of `hubcache report -o json` the test checks.
type savings struct {
	ManifestRequests     int `json:"manifest_requests"`
	UpstreamManifestGets int `json:"upstream_manifest_gets"`
	PullsAvoided         int `json:"pulls_avoided"`
}

// report runs `hubcache report -o json` over both replicas' metrics, as an operator would.
func (s *system) report(t *testing.T, bin string) savings {
	t.Helper()
	args := []string{"report", "-o", "json"}
	for _, p := range s.proxies {
		args = append(args, "--from=http://"+p.ops+"/metrics")
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("hubcache report: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("hubcache report: %v", err)
	}
	var r savings
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("hubcache report -o json: %v\n%s", err, out)
	}
	return r
}

// directPullGets pulls img by its Docker Hub name with a fresh containerd that knows nothing
// of hubcache (what the kubelet's runtime does without it) and returns the manifest GETs the
// fake hub served for that one pull.
func (s *system) directPullGets(ctx context.Context, t *testing.T, img image) int {
	t.Helper()
	d := containerd.Start(t, containerd.WithEnv(s.route.Env...))
	s.hub.Reset()
	if _, err := d.Images(t).PullImage(ctx, "docker.io/"+img.key); err != nil {
		t.Fatalf("pulling docker.io/%s without hubcache: %v\n%s", img.key, err, d.Log())
	}
	c := s.hub.Counts()
	n := 0
	for k, v := range c.ManifestGET {
		if strings.HasPrefix(k, img.repo+":") || strings.HasPrefix(k, img.repo+"@") {
			n += v
		}
	}
	if n != c.TotalManifestGET() || n == 0 {
		t.Fatalf("a direct pull of %s made the hub serve manifest GETs %v", img.key, c.ManifestGET)
	}
	s.tl.add("3", "without hubcache: a fresh containerd pulled docker.io/%s from the hub directly", img.key)
	return n
}

// 4. Docker Hub down: a Pod whose image is cached starts (the kubelet pulls, the proxies serve
// the tag stale); a Pod whose image never was cached fails with ErrImagePull and an event
// that names the image.
func (s *system) hubDown(ctx context.Context, t *testing.T, app, uncached image) {
	s.hub.SetMode(fakehub.Down())
	defer s.hub.SetMode(fakehub.Normal())
	s.tl.add("4", "Docker Hub down")
	staleBefore := s.proxySum(t, "hubcache_cache_stale_serves_total")
	s.runPod(ctx, t, "hub-down-cached", app, corev1.PullAlways)
	s.waitPulled(ctx, t, "hub-down-cached")
	if stale := s.proxySum(t, "hubcache_cache_stale_serves_total") - staleBefore; stale < 1 {
		t.Errorf("no stale serve counted while Docker Hub was down (%v)", stale)
	}

	stored := s.createPod(ctx, t, nsEnabled, testPod("hub-down-uncached", nodeName, uncached.short, ""))
	if stored.Spec.Containers[0].Image != uncached.rewritten {
		t.Fatalf("pod stored with %q, want %q", stored.Spec.Containers[0].Image, uncached.rewritten)
	}
	reason, msg, err := waitPullFailure(ctx, s.cp.client, nsEnabled, "hub-down-uncached")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, uncached.rewritten) || !strings.Contains(msg, "503") {
		t.Errorf("pull failure event %q should name the image and the 503 the node answered", msg)
	}
	s.tl.add("4", "cached image started (served stale); uncached pod %s: %s", reason, msg)
	if err := deleteAndWait(ctx, s.cp.client, nsEnabled, "hub-down-uncached"); err != nil {
		t.Fatal(err)
	}
}

// 5. The webhook stopped: the API server cannot call it and, the policy being Ignore, admits
// the Pod unchanged, without waiting for more than the webhook's timeout.
func (s *system) webhookDown(ctx context.Context, t *testing.T, app image) {
	s.webhook.stop()
	s.tl.add("5", "webhook stopped")
	start := time.Now()
	stored := s.createPod(ctx, t, nsEnabled, testPod("webhook-down", "", app.short, ""))
	took := time.Since(start)
	if got := stored.Spec.Containers[0].Image; got != app.short {
		t.Errorf("with the webhook down the pod was stored with %q, want it unchanged (%q)", got, app.short)
	}
	s.tl.add("5", "pod admitted unchanged (%s) in %s", app.short, took.Round(time.Millisecond))
	if err := s.cp.client.CoreV1().Pods(nsEnabled).Delete(ctx, "webhook-down", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Back for the next step.
	if err := s.webhook.start(); err != nil {
		t.Fatalf("restarting the webhook: %v\n%s", err, s.webhook.log())
	}
	s.cp.waitForWebhook(t, nsEnabled)
	s.tl.add("5", "webhook restarted, rewriting again")
}

// 6. Both proxy replicas stopped: the node entry point cannot reach the Service and fetches
// from Docker Hub itself (degraded, uncached), so a Pod with an image never seen before
// still starts.
func (s *system) proxiesDown(ctx context.Context, t *testing.T, img image) {
	for _, p := range s.proxies {
		p.stop()
	}
	s.tl.add("6", "both proxies stopped")
	s.hub.Reset()
	s.runPod(ctx, t, "proxies-down", img, "")
	c := s.hub.Counts()
	// The node relays containerd's requests as they are: a HEAD of the tag, then a GET of
	// the manifest by digest.
	repo, _, _ := strings.Cut(img.key, ":")
	gets := 0
	for k, n := range c.ManifestGET {
		if strings.HasPrefix(k, repo+"@") || strings.HasPrefix(k, repo+":") {
			gets += n
		}
	}
	if gets < 1 {
		t.Errorf("Docker Hub manifest GETs %v: the node did not fetch %s itself", c.ManifestGET, img.key)
	}
	for _, b := range img.blobs {
		if c.BlobGET[b.String()] < 1 {
			t.Errorf("Docker Hub never served blob %s: the node did not fetch it itself", b)
		}
	}
	mode := nodeMode(t, s.nodeOps)
	if mode != "fallback" {
		t.Errorf("node readiness says mode %q, want fallback", mode)
	}
	s.tl.add("6", "node in %s mode; pod started from Docker Hub directly", mode)

	// Back for the next step. The node tries the proxies again with a request once its probe
	// interval has passed (it sends no requests of its own): a free HEAD of a cached tag, as
	// the kubelet's next pull would, until one of them reaches a proxy.
	for _, p := range s.proxies {
		if err := p.start(); err != nil {
			t.Fatalf("restarting %s: %v\n%s", p.name, err, p.log())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for mode = nodeMode(t, s.nodeOps); mode != "forwarding"; mode = nodeMode(t, s.nodeOps) {
		if time.Now().After(deadline) {
			t.Fatalf("node still in %s mode 30s after the proxies came back\n%s", mode, s.node.log())
		}
		anonymousRequest(t, http.MethodHead, "http://"+s.nodeAddr+"/v2/docker.io/"+img.repo+"/manifests/1")
		time.Sleep(250 * time.Millisecond)
	}
	s.tl.add("6", "proxies restarted, node %s again", mode)
}

// 7. hubcache refuses a private repository to anonymous clients, so the webhook must not
// rewrite it. A Pod with imagePullSecrets runs a private image and a public one: the webhook
// asks the proxies' visibility endpoint, the private repository is not served (anonymous
// Docker Hub refuses it), so that image is left alone with reason private-repository and the
// kubelet pulls it straight from Docker Hub with the Pod's secret; the public image is
// rewritten and comes through hubcache. The Pod turns Ready.
func (s *system) privateImage(ctx context.Context, t *testing.T, priv, pub image) {
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "hub-credentials"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: dockerConfigJSON(hubUser, hubPassword)},
	}
	if _, err := s.cp.client.CoreV1().Secrets(nsEnabled).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the pull secret: %v", err)
	}
	// First, what a rewrite would lead to: anonymous clients of hubcache never get the private
	// repository, not from the node entry point, not from either proxy, not by a CRI pull of
	// the would-be rewrite. (The first request makes the proxies check the repository with
	// Docker Hub and remember the answer, so the webhook's question below is answered from
	// memory, well inside its 500 ms budget even on a busy machine.)
	before := s.hub.Counts()
	refusedBefore := s.proxySum(t, "hubcache_visibility_refusals_total", `reason="private-repository"`)
	hosts := []string{s.nodeAddr}
	for _, p := range s.proxies {
		hosts = append(hosts, p.addr)
	}
	for _, h := range hosts {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			status, body := anonymousRequest(t, method, "http://"+h+"/v2/docker.io/"+priv.repo+"/manifests/1")
			if status != http.StatusForbidden || (method == http.MethodGet && !strings.Contains(body, `"DENIED"`)) {
				t.Errorf("anonymous %s of %s through %s: %d %s; want 403 DENIED", method, priv.key, h, status, body)
			}
		}
	}
	rewritten := s.nodeAddr + "/docker.io/" + priv.key
	if _, err := s.kubelet.Images.PullImage(ctx, rewritten); err == nil {
		t.Errorf("containerd pulled %s through hubcache without credentials", rewritten)
	}
	if c := s.hub.Counts(); c.TotalManifestGET() != before.TotalManifestGET() || c.TokenWithCredentials != before.TokenWithCredentials {
		t.Errorf("refusing the private repository made Docker Hub serve manifests (%v) or use credentials", c.ManifestGET)
	}
	// The refusals are hubcache's own: the node passes the proxies' 403 on.
	if refused := s.proxySum(t, "hubcache_visibility_refusals_total", `reason="private-repository"`) - refusedBefore; refused < float64(2*len(hosts)) {
		t.Errorf("the proxies counted %v private-repository refusals, want at least %d", refused, 2*len(hosts))
	}
	s.tl.add("7", "anonymous GET/HEAD of %s through the node and both proxies: 403 DENIED; CRI pull of %s refused", priv.key, rewritten)
	p := testPod("private", nodeName, priv.short, "")
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: pub.short})
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: secret.Name}}
	s.hub.Reset()
	tunnels := s.route.tunnels.Load()
	cl, w := s.cp.clientWithWarnings(t)
	stored, err := cl.CoreV1().Pods(nsEnabled).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the pod with a private image: %v", err)
	}
	if got := stored.Spec.Containers[0].Image; got != priv.short {
		t.Errorf("private image stored as %q, want it left alone (%q)", got, priv.short)
	}
	if got := stored.Spec.Containers[1].Image; got != pub.rewritten {
		t.Errorf("public image of the same pod stored as %q, want the rewrite %q", got, pub.rewritten)
	}
	var kept string
	for _, m := range w.list {
		if strings.Contains(m, priv.short) && strings.Contains(m, "left unchanged") {
			kept = m
		}
	}
	if !strings.Contains(kept, string(rewrite.ReasonPrivate)) {
		t.Errorf("warnings %q: none says the private image was left alone as %s", w.list, rewrite.ReasonPrivate)
	}
	s.tl.add("7", "webhook asked the proxies: %s left alone (%s), %s rewritten", priv.short, rewrite.ReasonPrivate, pub.short)

	start := time.Now()
	ready, err := waitReady(ctx, s.cp.client, nsEnabled, p.Name)
	if err != nil {
		t.Fatalf("%v\nnode log:\n%s", err, s.node.log())
	}
	images := map[string]string{}
	for _, st := range ready.Status.ContainerStatuses {
		images[st.Name] = st.ImageID
	}
	s.tl.add("7", "pod private Ready %s after create, running %s and %s", time.Since(start).Round(100*time.Millisecond), images["app"], images["sidecar"])

	// Which way each image came: the private one from Docker Hub's name with the Pod's
	// secret (a token asked with credentials, GETs of the private repository, through the
	// route), the public one through hubcache (the hub saw the proxy's GET by tag; containerd
	// itself asks by digest after a HEAD).
	if !strings.HasPrefix(images["app"], "docker.io/"+priv.repo+"@") {
		t.Errorf("private container runs %q, want docker.io/%s@…", images["app"], priv.repo)
	}
	if !strings.HasPrefix(images["sidecar"], s.nodeAddr+"/docker.io/"+pub.repo+"@") {
		t.Errorf("public container runs %q, want it from %s", images["sidecar"], s.nodeAddr)
	}
	c := s.hub.Counts()
	privGets := 0
	for k, n := range c.ManifestGET {
		if strings.HasPrefix(k, priv.repo+"@") || strings.HasPrefix(k, priv.repo+":") {
			privGets += n
		}
	}
	if privGets == 0 || c.TokenWithCredentials == 0 || s.route.tunnels.Load() == tunnels {
		t.Errorf("the private image did not come from Docker Hub with the Pod's secret: manifest GETs %v, tokens with credentials %d, tunnels %d",
			c.ManifestGET, c.TokenWithCredentials, s.route.tunnels.Load()-tunnels)
	}
	if c.ManifestGET[pub.key] != 1 {
		t.Errorf("Docker Hub manifest GETs %v: want one GET of %s, the proxies' fetch", c.ManifestGET, pub.key)
	}
	for _, b := range pub.blobs {
		if c.BlobGET[b.String()] != 1 {
			t.Errorf("Docker Hub served blob %s of the public image %d times, want once (through hubcache)", b, c.BlobGET[b.String()])
		}
	}
	s.tl.add("7", "hub: %d manifest GETs of %s with the Pod's secret through %d tunnels to Docker Hub's name; %s fetched once by the proxies",
		privGets, priv.repo, s.route.tunnels.Load()-tunnels, pub.key)

	if err := deleteAndWait(ctx, s.cp.client, nsEnabled, p.Name); err != nil {
		t.Fatal(err)
	}
}

// dockerConfigJSON is a kubernetes.io/dockerconfigjson Secret's content for Docker Hub.
func dockerConfigJSON(user, password string) []byte {
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		"https://index.docker.io/v1/": map[string]string{"username": user, "password": password, "auth": auth},
	}})
	return b
}

// anonymousRequest asks url as a client without credentials and returns the status and body.
func anonymousRequest(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body)
}

// nodeMode reads the node entry point's mode (forwarding or fallback) from /readyz.
func nodeMode(t *testing.T, ops string) string {
	t.Helper()
	resp, err := http.Get("http://" + ops + "/readyz")
	if err != nil {
		t.Fatalf("node readyz: %v", err)
	}
	defer resp.Body.Close()
	var rd struct {
		Mode string `json:"mode"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		t.Fatalf("node readyz: %v", err)
	}
	return rd.Mode
}

// timeline records what happened, with Docker Hub's counts at that moment, and prints it as
// it goes and in full when the test ends.
type timeline struct {
	t     *testing.T
	start time.Time
	hub   *fakehub.Hub
	lines []string
}

func newTimeline(t *testing.T) *timeline {
	tl := &timeline{t: t, start: time.Now()}
	t.Cleanup(func() {
		t.Logf("timeline (hub counts since the last reset):\n%s", strings.Join(tl.lines, "\n"))
	})
	return tl
}

func (tl *timeline) add(step, format string, args ...any) {
	counts := ""
	if tl.hub != nil {
		c := tl.hub.Counts()
		counts = fmt.Sprintf("  [hub: manifest GET %d HEAD %d, blob GET %d]",
			c.TotalManifestGET(), c.TotalManifestHEAD(), c.TotalBlobGET())
	}
	if step == "" {
		step = "…"
	}
	line := fmt.Sprintf("%7s  %-5s %s%s", time.Since(tl.start).Round(100*time.Millisecond), step, fmt.Sprintf(format, args...), counts)
	tl.lines = append(tl.lines, line)
	tl.t.Log(line)
}
