// Package bench measures the hubcache binary's blob paths against baselines measured in the
// same run: the physical limit (a plain http.ServeFile of the same file, a direct MinIO GET,
// the upstream itself) and the peer, distribution v3 (test/bench/peer). Each benchmark runs
// its sides in alternation, several times, and records one row per target with
// test/bench/table; nothing here asserts a time. Run with `make bench`.
package bench

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/procs"
)

const (
	// runs is how many times each side of a row is measured, in alternation.
	runs = 5
	// blobSize is the 256 MiB.
	blobSize = 256 << 20
	// readBuffer is the benchmark client's read size: large, so the client's own syscalls
	// weigh little next to the server's.
	readBuffer = 256 << 10
)

// client is one HTTP client for every side: keep-alive connections, no compression, no
// proxy from the environment.
var client = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 128,
	DisableCompression:  true,
	ReadBufferSize:      64 << 10,
	WriteBufferSize:     16 << 10,
}}

// transfer is one GET: bytes received, time to the first body byte and to the last.
type transfer struct {
	n           int64
	first, last time.Duration
}

// discard is io.Discard without ReaderFrom: io.Copy through it uses our large buffer
// instead of io.Discard's 8 KiB one.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// get GETs url, reads the body to the end and checks its length is want (want < 0: any).
func get(url string, want int64) (transfer, error) { return getWith(client, url, want) }

// getWith is get with another client.
func getWith(c *http.Client, url string, want int64) (transfer, error) {
	start := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		return transfer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return transfer{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	buf := make([]byte, readBuffer)
	var t transfer
	n, err := resp.Body.Read(buf)
	t.first = time.Since(start)
	t.n = int64(n)
	if err == nil {
		var m int64
		m, err = io.CopyBuffer(discard{}, resp.Body, buf)
		t.n += m
	} else if err == io.EOF {
		err = nil
	}
	t.last = time.Since(start)
	if err != nil {
		return t, fmt.Errorf("GET %s after %d bytes: %w", url, t.n, err)
	}
	if want >= 0 && t.n != want {
		return t, fmt.Errorf("GET %s: %d bytes, want %d", url, t.n, want)
	}
	return t, nil
}

// verified GETs url and checks the body's digest: every side is checked once before it is
// timed (the timed runs only count bytes, so the client's hashing does not hide the servers').
func verified(b *testing.B, url string, d v1.Hash) {
	b.Helper()
	verifiedWith(b, client, url, d)
}

// verifiedWith is verified with another client.
func verifiedWith(b *testing.B, c *http.Client, url string, d v1.Hash) {
	b.Helper()
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s", url, resp.Status)
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, resp.Body, make([]byte, readBuffer)); err != nil {
		b.Fatalf("GET %s: %v", url, err)
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != d.String() {
		b.Fatalf("GET %s: digest %s, want %s", url, got, d)
	}
}

// parallel runs n GETs of url at once and returns the wall time until all have ended.
func parallel(n int, url string, want int64) (time.Duration, error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for range n {
		wg.Go(func() {
			if _, err := get(url, want); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	return elapsed, <-errs
}

// randomBlob returns size bytes that do not compress, fast (ChaCha8, not crypto/rand).
func randomBlob(size int, seed uint64) []byte {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	buf := make([]byte, size)
	_, _ = rand.NewChaCha8(s).Read(buf)
	return buf
}

// pushBlob pushes an image whose one layer is size random bytes (stored as is, not
// compressed) to repo:tag on the hub, and returns the layer's digest.
func pushBlob(b *testing.B, hub *fakehub.Hub, repo, tag string, size int, seed uint64) v1.Hash {
	b.Helper()
	l := static.NewLayer(randomBlob(size, seed), types.DockerLayer)
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		b.Fatal(err)
	}
	hub.Push(b, repo, tag, img)
	d, err := l.Digest()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// binDir holds the hubcache binary the benchmarks build; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hubcache-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// hubcacheBinary builds cmd/hubcache once per benchmark binary (HUBCACHE_BENCH_PROXY names
// another build to measure, e.g. an older release for a before/after).
var hubcacheBinary = sync.OnceValues(func() (string, error) {
	if bin := os.Getenv("HUBCACHE_BENCH_PROXY"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(binDir, "hubcache")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/hubcache").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building hubcache: %w\n%s", err, out)
	}
	return bin, nil
})

// process is a hubcache process started for a benchmark.
type process struct {
	*procs.Proc
	base string // http://127.0.0.1:PORT
	addr string
	cmd  *exec.Cmd
}

// startHubcache runs `hubcache <args>` on free ports with the given extra environment and its
// log at level error, waits until it is ready, and stops it when the benchmark ends.
func startHubcache(b *testing.B, env []string, args ...string) *process {
	b.Helper()
	bin, err := hubcacheBinary()
	if err != nil {
		b.Fatal(err)
	}
	p := procs.Start(b, bin, args[0], env, func(_, _, _ string) []string {
		return append(append([]string{}, args...), "--log-level", "error")
	})
	return &process{Proc: p, base: "http://" + p.Addr, addr: p.Addr, cmd: p.Cmd}
}

// stop ends the process now (a row that restarts it for a fresh peak RSS).
func (p *process) stop() { p.Kill() }

// startProxy runs `hubcache proxy` in front of the hub, with its data in dataDir.
func startProxy(b *testing.B, hubURL, dataDir string, env []string, extra ...string) *process {
	b.Helper()
	args := append([]string{"proxy", "--data-dir", dataDir, "--docker-config", b.TempDir(),
		"--upstream", "docker.io=" + hubURL}, extra...)
	return startHubcache(b, env, args...)
}

// blobFile returns the path of the file a proxy with dataDir keeps blob d in.
// blobFile finds the proxy's stored file for d. A client gets a fill's last byte before the
// object is committed, so the file may appear a moment after the pull: wait for it (bounded).
func blobFile(b *testing.B, dataDir string, d v1.Hash) string {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var found string
		err := filepath.WalkDir(dataDir, func(p string, e os.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a spool file removed while walking
			}
			if err == nil && !e.IsDir() && e.Name() == d.Hex {
				found = p
			}
			return err
		})
		if err == nil && found != "" {
			return found
		}
		if time.Now().After(deadline) {
			b.Fatalf("no file for %s under %s after 30s (%v)", d, dataDir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// peakRSS reads the process's high-water resident set size (VmHWM), in MiB.
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
			return kb / 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// mbps is a throughput in MB/s (10^6 bytes per second) of n bytes in d.
func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

// peerBinary reports whether distribution is built; rows note its absence rather than fail
// (make bench always builds it).
func peerBinary() bool { return os.Getenv("HUBCACHE_DISTRIBUTION") != "" }
