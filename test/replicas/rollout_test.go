package replicas

import (
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hubcache/hubcache/test/fakehub"
)

// service is a tiny stand-in for a Kubernetes Service: it sends each request to the next
// backend whose /readyz answered 200 at its last probe (every 50 ms), the way endpoints drop a
// pod that turned not ready.
type service struct {
	mu       sync.Mutex
	backends []*process
	ready    map[*process]bool
	next     int
	proxy    *httputil.ReverseProxy
	noTarget atomic.Int64 // requests that found no ready backend
}

func newService(t *testing.T, backends ...*process) (*service, string) {
	s := &service{backends: backends, ready: map[*process]bool{}}
	for _, b := range backends {
		s.ready[b] = true
	}
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			u, _ := url.Parse(r.In.Header.Get("X-Test-Backend"))
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.probe(ctx) })
	addr := freePort(t)
	srv := &http.Server{Addr: addr, Handler: s}
	go func() { _ = srv.ListenAndServe() }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = srv.Close() })
	for range 100 {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s, "http://" + addr
}

func (s *service) probe(ctx context.Context) {
	client := &http.Client{Timeout: time.Second}
	for {
		s.mu.Lock()
		backends := append([]*process(nil), s.backends...)
		s.mu.Unlock()
		for _, b := range backends {
			ok := false
			if resp, err := client.Get("http://" + b.Ops + "/readyz"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok = resp.StatusCode == http.StatusOK
			}
			s.mu.Lock()
			s.ready[b] = ok
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *service) set(backends ...*process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backends = backends
	for _, b := range backends {
		if _, ok := s.ready[b]; !ok {
			s.ready[b] = false
		}
	}
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	var target *process
	for range s.backends {
		b := s.backends[s.next%len(s.backends)]
		s.next++
		if s.ready[b] {
			target = b
			break
		}
	}
	s.mu.Unlock()
	if target == nil {
		s.noTarget.Add(1)
		http.Error(w, "no ready endpoint", http.StatusServiceUnavailable)
		return
	}
	r.Header.Set("X-Test-Backend", target.URL())
	s.proxy.ServeHTTP(w, r)
}

// nodeOutcomes reads hubcache_node_requests_total by outcome from the node's metrics.
func nodeOutcomes(t *testing.T, node *process) map[string]int {
	t.Helper()
	resp, err := http.Get("http://" + node.Ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, `hubcache_node_requests_total{outcome="`)
		if !ok {
			continue
		}
		outcome, value, _ := strings.Cut(rest, `"} `)
		var n int
		for _, c := range value {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		out[outcome] = n
	}
	return out
}

func TestARollingRestartOfTheProxiesSendsNoPullToTheFallback(t *testing.T) {
	hub := fakehub.New(t)
	images := []string{"library/a:v1", "library/b:v1", "library/c:v1"}
	for _, img := range images {
		repo, tag, _ := strings.Cut(img, ":")
		hub.Push(t, repo, tag, fakehub.RandomImage(t, 2, 50_000, true))
	}
	proxyArgs := []string{"proxy", "--upstream=docker.io=" + hub.URL(), "--log-level=warn", "--drain-delay=1s", "--tag-ttl=1s"}
	old := []*process{start(t, "proxy-0", nil, proxyArgs...), start(t, "proxy-1", nil, proxyArgs...)}
	svc, svcURL := newService(t, old...)
	node := start(t, "node", nil, "node",
		"--proxy="+svcURL,
		"--upstream=docker.io="+hub.URL(),
		"--proxy-timeout=5s",
		"--fallback-after=1",
		"--probe-interval=1s")

	// Continuous pulls through the node entry point until the rollout is over.
	ctx, stop := context.WithCancel(context.Background())
	var pulls, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i++ {
				ref, err := name.ParseReference(node.Addr+"/docker.io/"+images[i%len(images)], name.Insecure)
				if err != nil {
					t.Error(err)
					return
				}
				img, err := remote.Image(ref)
				if err == nil {
					err = readImage(img)
				}
				pulls.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)

	// The rollout: maxSurge 1, maxUnavailable 0. Each new replica is ready before an old one is
	// sent SIGTERM; the old one fails readiness, drains, and exits.
	current := append([]*process(nil), old...)
	for i, o := range old {
		n := start(t, "proxy-new-"+string(rune('0'+i)), nil, proxyArgs...)
		current = append(current, n)
		svc.set(current...)
		time.Sleep(200 * time.Millisecond) // the probe sees it ready
		if err := o.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-o.Exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not exit after SIGTERM", o.Name)
		}
		current = current[1:]
		svc.set(current...)
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()

	outcomes := nodeOutcomes(t, node)
	t.Logf("pulls %d, failed %d, node outcomes %v, requests without a ready endpoint %d",
		pulls.Load(), failures.Load(), outcomes, svc.noTarget.Load())
	if pulls.Load() == 0 || outcomes["forwarded"] == 0 {
		t.Fatal("no pull went through the node and the proxies")
	}
	if failures.Load() != 0 {
		t.Errorf("%d of %d pulls failed during the rollout; first: %v", failures.Load(), pulls.Load(), firstErr.Load())
	}
	if outcomes["fallback"] != 0 || outcomes["error"] != 0 {
		t.Errorf("the node fell back %d times and failed %d times during the rollout", outcomes["fallback"], outcomes["error"])
	}
}

// readImage reads an image's config and every layer's bytes, returning the first error.
func readImage(img v1.Image) error {
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
