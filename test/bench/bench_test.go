// Package bench measures the proxy against baselines measured in the same run: the fake
// Docker Hub itself (the physical limit of a loopback fetch) and, when built, the peer
// distribution v3 registry in proxy mode. Each benchmark reports ratios; nothing here asserts
// a time. Run with `make bench`.
package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

const (
	layerSize = 64 << 20
	stampede  = 20
)

// world is one benchmark's fake Docker Hub, hubcache in front of it, and the peer if built.
type world struct {
	hub  *fakehub.Hub
	hc   string // hubcache base URL
	peer string // distribution base URL, "" when not available
}

func newWorld(b *testing.B) *world {
	b.Helper()
	hub := fakehub.New(b)
	u, err := url.Parse(hub.URL())
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(context.Background(), b.TempDir(), map[string]*url.URL{"docker.io": u},
		server.WithDockerConfigDir(b.TempDir()),
		server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		b.Fatalf("building the proxy: %v", err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(hs.Close)
	return &world{hub: hub, hc: hs.URL, peer: startPeer(b, hub.URL())}
}

// startPeer runs distribution's registry in proxy mode in front of the hub, when
// HUBCACHE_DISTRIBUTION names its binary (hack/tools.sh distribution).
func startPeer(b *testing.B, hubURL string) string {
	b.Helper()
	bin := os.Getenv("HUBCACHE_DISTRIBUTION")
	if bin == "" {
		b.Log("HUBCACHE_DISTRIBUTION not set: no peer baseline (hack/tools.sh distribution)")
		return ""
	}
	dir := b.TempDir()
	l, err := (&net0{}).listen()
	if err != nil {
		b.Fatal(err)
	}
	addr := l
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\nproxy:\n  remoteurl: %s\n",
		filepath.Join(dir, "data"), addr, hubURL)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", cfgPath)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatalf("starting distribution: %v", err)
	}
	b.Cleanup(func() { cancel(); _ = cmd.Wait() })
	base := "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(base + "/v2/"); err == nil {
			resp.Body.Close()
			return base
		}
	}
	b.Fatal("distribution did not start")
	return ""
}

// pushLayer pushes a fresh image with one random layer and returns the layer digest.
func pushLayer(b *testing.B, hub *fakehub.Hub, tag string) v1.Hash {
	b.Helper()
	img := fakehub.RandomImage(b, 1, layerSize, false)
	hub.Push(b, "library/bench", tag, img)
	ls, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// fetch GETs url and checks the body's sha256.
func fetch(url string, want v1.Hash) (int64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, err
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != want.String() {
		return n, fmt.Errorf("GET %s: digest %s, want %s", url, got, want)
	}
	return n, nil
}

// direct downloads the layer from the hub with a registry client (token flow included) and
// checks its digest: what a client does without any cache.
func direct(hub *fakehub.Hub, d v1.Hash) error {
	ref, err := name.NewDigest(hub.Host()+"/library/bench@"+d.String(), name.Insecure)
	if err != nil {
		return err
	}
	l, err := remote.Layer(ref)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	// The compressed reader verifies the digest at EOF.
	_, err = io.Copy(io.Discard, rc)
	return err
}

// directly has n clients download the layer straight from the hub at once.
func directly(n int, hub *fakehub.Hub, d v1.Hash) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := direct(hub, d); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func timed(b *testing.B, f func() error) time.Duration {
	b.Helper()
	start := time.Now()
	if err := f(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// concurrently runs n fetches of url at once and returns when all are done.
func concurrently(n int, url string, d v1.Hash) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := fetch(url, d); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// BenchmarkWarmBlob serves a cached 64 MiB layer; the baseline is the same download straight
// from the hub, the peer is distribution serving its cached copy.
func BenchmarkWarmBlob(b *testing.B) {
	w := newWorld(b)
	d := pushLayer(b, w.hub, "warm")
	hcURL := w.hc + "/v2/docker.io/library/bench/blobs/" + d.String()
	peerURL := w.peer + "/v2/library/bench/blobs/" + d.String()
	// Warm both caches.
	timed(b, func() error { _, err := fetch(hcURL, d); return err })
	if w.peer != "" {
		timed(b, func() error { _, err := fetch(peerURL, d); return err })
	}

	var hc, base, peer time.Duration
	b.SetBytes(layerSize)
	b.ResetTimer()
	for b.Loop() {
		hc += timed(b, func() error { _, err := fetch(hcURL, d); return err })
		b.StopTimer()
		base += timed(b, func() error { return direct(w.hub, d) })
		if w.peer != "" {
			peer += timed(b, func() error { _, err := fetch(peerURL, d); return err })
		}
		b.StartTimer()
	}
	report(b, hc, base, peer)
}

// BenchmarkColdStampede has 20 clients ask for one cold 64 MiB layer at once: hubcache
// fetches it once and streams it to all; the baseline is the same 20 clients downloading it
// straight from the hub (no cache at all, 20 upstream pulls); the peer is distribution's proxy
// under the same stampede. Upstream blob GETs per stampede are reported too.
func BenchmarkColdStampede(b *testing.B) {
	w := newWorld(b)
	var hc, base, peer time.Duration
	var hcGets, peerGets int
	i := 0
	b.SetBytes(layerSize * stampede)
	for b.Loop() {
		b.StopTimer()
		i++
		d := pushLayer(b, w.hub, fmt.Sprintf("cold%d", i))
		base += timed(b, func() error { return directly(stampede, w.hub, d) })
		w.hub.Reset()
		b.StartTimer()
		hc += timed(b, func() error {
			return concurrently(stampede, w.hc+"/v2/docker.io/library/bench/blobs/"+d.String(), d)
		})
		b.StopTimer()
		hcGets += w.hub.Counts().BlobGET[d.String()]
		if w.peer != "" {
			w.hub.Reset()
			peer += timed(b, func() error {
				return concurrently(stampede, w.peer+"/v2/library/bench/blobs/"+d.String(), d)
			})
			peerGets += w.hub.Counts().BlobGET[d.String()]
		}
		b.StartTimer()
	}
	report(b, hc, base, peer)
	b.ReportMetric(float64(hcGets)/float64(i), "hubcache-upstream-GETs/op")
	if w.peer != "" {
		b.ReportMetric(float64(peerGets)/float64(i), "peer-upstream-GETs/op")
	}
}

func report(b *testing.B, hc, base, peer time.Duration) {
	b.ReportMetric(hc.Seconds()/base.Seconds(), "x-direct-time")
	if peer > 0 {
		b.ReportMetric(hc.Seconds()/peer.Seconds(), "x-peer-time")
	}
	b.Logf("hubcache %s, direct from hub %s, peer %s (totals over %d runs)", hc, base, peer, b.N)
}
