package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/hubcache/hubcache/test/fakehub"

	"github.com/hubcache/hubcache/test/testenv"
)

const (
	stalledBlobReaders     = 1000
	stalledManifestReaders = 100
	bigManifestSize        = 3_500_000
)

// BenchmarkStalledReaders runs the hubcache binary (so that its RSS is its own) in front of
// the fake hub, opens 1000 connections that GET a cached 64 MiB blob and 100 that GET a
// cached ~3.5 MiB manifest, none of which read a byte, then has an ordinary client pull the
// manifest. It reports the proxy's peak RSS (VmHWM) and whether the ordinary client was
// served. Not a timed test: the figure goes in docs/bench.md.
func BenchmarkStalledReaders(b *testing.B) {
	hub := fakehub.New(b)
	layer := pushLayer(b, hub, "stalled")
	img := fakehub.RandomImage(b, 1, 1000, false)
	img = mutate.Annotations(img, map[string]string{"pad": strings.Repeat("x", bigManifestSize)}).(v1.Image)
	hub.Push(b, "library/big", "v1", img)
	md, err := img.Digest()
	if err != nil {
		b.Fatal(err)
	}

	// HUBCACHE_BENCH_PROXY names another build to measure (an older release, for a before/after).
	bin := os.Getenv("HUBCACHE_BENCH_PROXY")
	if bin == "" {
		bin = filepath.Join(b.TempDir(), "hubcache")
		if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/hubcache").CombinedOutput(); err != nil {
			b.Fatalf("building hubcache: %v\n%s", err, out)
		}
	}
	addr := freeAddr(b)
	cmd := exec.Command(bin, "proxy", "--listen", addr, "--metrics-listen", "", "--data-dir", b.TempDir(),
		"--docker-config", b.TempDir(), "--upstream", "docker.io="+hub.URL(), "--log-level", "error")
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=400MiB") // as manifests/base sets it from the limit
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://" + addr
	blobPath := "/v2/docker.io/library/bench/blobs/" + layer.String()
	manifestPath := "/v2/docker.io/library/big/manifests/" + md.String()
	waitUp(b, base)
	// Warm both.
	if _, err := fetch(base+blobPath, layer); err != nil {
		b.Fatal(err)
	}
	if code := getCode(base + manifestPath); code != http.StatusOK {
		b.Fatalf("warming the manifest: %d", code)
	}

	for b.Loop() {
		var conns []net.Conn
		open := func(path string, n int) {
			for range n {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetReadBuffer(4 << 10)
				}
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nAccept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n", path)
				conns = append(conns, c)
			}
		}
		open(blobPath, stalledBlobReaders)
		open(manifestPath, stalledManifestReaders)
		time.Sleep(5 * time.Second) // let every response fill the socket buffers and block
		served := 0.0
		if code := getCode(base + manifestPath); code == http.StatusOK {
			served = 1
		}
		rss := peakRSS(b, cmd.Process.Pid)
		for _, c := range conns {
			_ = c.Close()
		}
		b.ReportMetric(rss/(1<<20), "peak-rss-MiB")
		b.ReportMetric(served, "ordinary-client-served")
	}
}

func freeAddr(b *testing.B) string {
	b.Helper()
	return testenv.FreeAddr(b)
}

func waitUp(b *testing.B, base string) {
	b.Helper()
	for range 100 {
		if getCode(base+"/v2/") == http.StatusOK {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("the proxy did not start")
}

func getCode(url string) int {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0
	}
	return resp.StatusCode
}

// peakRSS reads the process's high-water resident set size, in bytes.
func peakRSS(b *testing.B, pid int) float64 {
	b.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
