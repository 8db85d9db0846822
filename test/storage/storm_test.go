package storage

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/s3server"
)

// The tests of this file stop a store WHILE clients pull (the tests of outage_test.go stop it
// between pulls): fills are in flight when the store goes away and when it comes back.

// Phases of a storm. A pull that starts and ends in the same steady phase (before, down,
// after) must succeed; one that overlaps a transition may fail, but only visibly.
const (
	phaseBefore int32 = iota
	phaseStopping
	phaseDown
	phaseStarting
	phaseAfter
)

var phaseNames = []string{"before", "stopping", "down", "starting", "after"}

// errCorrupt marks a response that looked complete (status 200, every byte of its length,
// a clean end) but whose bytes do not hash to the digest asked for: the one outcome a cache
// must never produce.
var errCorrupt = errors.New("complete-looking body with wrong bytes")

// rawPull pulls repo:ref ("v1" or "sha256:…") of an image through the proxy with plain HTTP
// and checks every byte against its digest. It tells a visible failure (a status, a cut
// transfer) from a corrupt body (errCorrupt), which go-containerregistry would blur.
func (p *proxy) rawPull(ctx context.Context, repo, ref string) error {
	return p.rawPullAt(ctx, repo, ref, false, nil)
}

// rawPullAt is rawPull; a slow client reads blobs 32 KiB at a time with a pause between
// reads, so that its response (and the store read behind it) is still open when a store stops.
// reading, when not nil, counts the blob bodies being read.
func (p *proxy) rawPullAt(ctx context.Context, repo, ref string, slow bool, reading *atomic.Int32) error {
	base := p.http.URL + "/v2/docker.io/" + repo
	body, hdr, err := rawGet(ctx, base+"/manifests/"+ref, "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json", false, nil)
	if err != nil {
		return fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	got := sha(body)
	if want := hdr.Get("Docker-Content-Digest"); want != got.String() {
		return fmt.Errorf("manifest %s:%s: %w: Docker-Content-Digest %s, body %s", repo, ref, errCorrupt, want, got)
	}
	if strings.HasPrefix(ref, "sha256:") && ref != got.String() {
		return fmt.Errorf("manifest %s@%s: %w: body has %s", repo, ref, errCorrupt, got)
	}
	var m struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("manifest %s:%s: %w: %v", repo, ref, errCorrupt, err)
	}
	blobs := []string{m.Config.Digest}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest)
	}
	for _, d := range blobs {
		body, _, err := rawGet(ctx, base+"/blobs/"+d, "", slow, reading)
		if err != nil {
			return fmt.Errorf("blob %s of %s: %w", d, repo, err)
		}
		if got := sha(body); got.String() != d {
			return fmt.Errorf("blob %s of %s: %w: %d bytes with digest %s", d, repo, errCorrupt, len(body), got)
		}
	}
	return nil
}

// rawGet returns the whole body of a 200 answer; any other status or a transfer that does not
// end cleanly with its announced length is an error.
func rawGet(ctx context.Context, url, accept string, slow bool, reading *atomic.Int32) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if reading != nil && resp.StatusCode == http.StatusOK {
		reading.Add(1)
		defer reading.Add(-1)
	}
	var r io.Reader = resp.Body
	if slow {
		r = &slowReader{r: resp.Body}
	}
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("status %d, transfer cut after %d bytes: %w", resp.StatusCode, len(body), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return nil, nil, fmt.Errorf("%d of %d bytes", len(body), resp.ContentLength)
	}
	return body, resp.Header, nil
}

// slowReader reads at most 32 KiB at a time and pauses after each read.
type slowReader struct{ r io.Reader }

func (s *slowReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p[:min(len(p), 32<<10)])
	time.Sleep(2 * time.Millisecond)
	return n, err
}

// pullResult is one pull of a storm.
type pullResult struct {
	repo, ref  string
	start, end int32
	err        error
}

// storm is a few clients pulling a changing set of references through one proxy, over and
// over, each pull recorded with the phases it started and ended in.
type storm struct {
	p     *proxy
	phase atomic.Int32
	refs  atomic.Pointer[[][2]string]

	warm []image    // cached before the storm
	cold [3][]image // first pulled before, during and after the outage
	// warmReading counts the bodies of cached blobs slow clients are reading: the store
	// is stopped while at least one is open.
	warmReading atomic.Int32

	mu      sync.Mutex
	results []pullResult
}

func (s *storm) setRefs(images ...[]image) {
	var refs [][2]string
	for _, imgs := range images {
		for _, img := range imgs {
			refs = append(refs, [2]string{img.repo, img.tag}, [2]string{img.repo, img.digest.String()})
		}
	}
	s.refs.Store(&refs)
}

// run starts n clients; the returned function stops them and waits.
func (s *storm) run(n int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := range n {
		wg.Go(func() {
			for i := c; ctx.Err() == nil; i++ {
				refs := *s.refs.Load()
				r := refs[(i*7+c)%len(refs)]
				start := s.phase.Load()
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
				var reading *atomic.Int32
				if strings.HasPrefix(r[0], "library/warm") {
					reading = &s.warmReading
				}
				err := s.p.rawPullAt(pctx, r[0], r[1], c%2 == 1, reading)
				pcancel()
				if ctx.Err() != nil {
					return // stopped mid-pull: not an outcome
				}
				s.mu.Lock()
				s.results = append(s.results, pullResult{repo: r[0], ref: r[1], start: start, end: s.phase.Load(), err: err})
				s.mu.Unlock()
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// waitPulls waits until n pulls that started in phase have ended. The bound is generous: it
// only turns a hang into a failure.
func (s *storm) waitPulls(t *testing.T, phase int32, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s.mu.Lock()
		done := 0
		for _, r := range s.results {
			if r.start == phase {
				done++
			}
		}
		s.mu.Unlock()
		if done >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d pulls of phase %s ended", done, n, phaseNames[phase])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds; the bound only turns a hang into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outage is what a storm does to a store, and what it checks while the store is down and
// once it is back.
type outage struct {
	store      string // "metadata" or "blob_store"
	stop       func(t *testing.T)
	start      func(t *testing.T)
	whileDown  func(t *testing.T)
	afterStart func(t *testing.T)
	// warmLayer is the size of the cached images' layers (default 2 MiB). Larger than what
	// the sockets buffer, a cached blob's S3 read is still open when S3 is killed.
	warmLayer int64
}

// stormThroughOutage runs the common scenario: warm images cached first, then clients pull
// warm and cold images while the store is stopped in the middle of cold fills, stays down,
// and comes back; the proxy is never restarted. It asserts the outcomes and returns the
// storm for more checks.
func stormThroughOutage(t *testing.T, p *proxy, hub *fakehub.Hub, o outage) *storm {
	t.Helper()
	const clients, perPhase = 4, 16
	var warm []image
	warmLayer := cmp.Or(o.warmLayer, 2<<20)
	for i := range 2 {
		warm = append(warm, pushImage(t, hub, fmt.Sprintf("library/warm%d", i), "v1", 2, warmLayer))
	}
	// Cold images per phase, their layers sent slowly so that fills are in flight when the
	// store goes away and when it comes back.
	var cold [3][]image
	for ph := range cold {
		for i := range 2 {
			img := pushImage(t, hub, fmt.Sprintf("library/cold%d-%d", ph, i), "v1", 2, 1<<20)
			for _, d := range img.layers[1:] {
				hub.SetDigestMode(d, fakehub.Slow(0, 5*time.Millisecond))
			}
			cold[ph] = append(cold[ph], img)
		}
	}
	for _, img := range warm {
		if err := p.pull(img.ref); err != nil {
			t.Fatalf("warming the cache: %v", err)
		}
	}

	s := &storm{p: p, warm: warm, cold: cold}
	s.setRefs(warm, cold[0])
	stopClients := s.run(clients)
	defer stopClients()

	// Stop the store once a cold fill is under way and a cached blob is being read.
	waitFor(t, "a cold fill to start and a cached blob to be read", func() bool {
		if s.warmReading.Load() == 0 {
			return false
		}
		c := hub.Counts()
		for _, img := range cold[0] {
			for _, d := range img.layers[1:] {
				if c.BlobGET[d.String()] > 0 {
					return true
				}
			}
		}
		return false
	})
	s.phase.Store(phaseStopping)
	o.stop(t)
	s.phase.Store(phaseDown)
	s.setRefs(warm, cold[1])
	s.waitPulls(t, phaseDown, perPhase)

	code, body := p.opsGet(t, "/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"`+o.store+`":"error`) {
		t.Errorf("/readyz while %s is down = %d %s; want 200, degraded, %s error", o.store, code, body, o.store)
	}
	if got := p.metric(t, `hubcache_store_up{store="`+o.store+`"}`); !strings.HasSuffix(got, " 0") {
		t.Errorf("store gauge while %s is down: %q", o.store, got)
	}
	if o.whileDown != nil {
		o.whileDown(t)
	}

	// Bring it back while clients pull, cold fills of the down phase included.
	s.setRefs(warm, cold[0], cold[1], cold[2])
	s.phase.Store(phaseStarting)
	o.start(t)
	s.phase.Store(phaseAfter)
	s.waitPulls(t, phaseAfter, perPhase)
	during := p.serverErrors()
	stopClients()
	// 5xx answered after this point went to clients stopped mid-pull, which no longer listen.
	_ = p.serverErrors()

	code, body = p.opsGet(t, "/readyz")
	if code != http.StatusOK || !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("/readyz after %s came back = %d %s; want 200 ready", o.store, code, body)
	}
	if got := p.metric(t, `hubcache_store_up{store="`+o.store+`"}`); !strings.HasSuffix(got, " 1") {
		t.Errorf("store gauge after %s came back: %q", o.store, got)
	}

	// Outcomes: nothing corrupt; pulls within a steady phase succeed; a pull that overlapped
	// a transition and failed succeeds on retry.
	ok, failed := map[int32]int{}, map[int32]int{}
	var retry []pullResult
	crossed := 0
	for _, r := range s.results {
		if r.start != r.end {
			crossed++
		}
		switch {
		case r.err == nil:
			ok[r.start]++
		case errors.Is(r.err, errCorrupt):
			t.Errorf("pull %s %s (%s → %s): %v", r.repo, r.ref, phaseNames[r.start], phaseNames[r.end], r.err)
		case r.start == r.end && r.start != phaseStopping && r.start != phaseStarting:
			t.Errorf("pull %s %s failed within the steady phase %s: %v", r.repo, r.ref, phaseNames[r.start], r.err)
		default:
			failed[r.start]++
			retry = append(retry, r)
		}
	}
	for _, r := range retry {
		t.Logf("failed visibly across a transition (%s → %s): %v", phaseNames[r.start], phaseNames[r.end], r.err)
		if err := p.rawPull(t.Context(), r.repo, r.ref); err != nil {
			t.Errorf("retry of %s %s: %v", r.repo, r.ref, err)
		}
	}
	for ph := phaseBefore; ph <= phaseAfter; ph++ {
		t.Logf("phase %-8s pulls ok %d, failed visibly then retried ok %d", phaseNames[ph], ok[ph], failed[ph])
	}
	if len(during) > 0 {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(line, "request failed") && strings.Contains(line, "status=5") {
				t.Logf("proxy: %s", line)
			}
		}
	}
	t.Logf("pulls in flight across a stop or a start: %d", crossed)
	t.Logf("5xx answers while clients pulled: %v; upstream blob GETs: %d", during, hub.Counts().TotalBlobGET())
	t.Logf("fills that could not record their row: %d; blobs passed through uncached: %d",
		strings.Count(p.logs.String(), "recording blob failed"), strings.Count(p.logs.String(), "blob passed through without caching"))

	// Everything pulls now, without a proxy restart.
	all := append(append(append([]image{}, warm...), cold[0]...), append(cold[1], cold[2]...)...)
	for _, img := range all {
		for _, ref := range []string{img.tag, img.digest.String()} {
			if err := p.rawPull(t.Context(), img.repo, ref); err != nil {
				t.Errorf("pull after recovery: %v", err)
			}
		}
	}
	return s
}

// checkObjects reads every object under the blob store URL's prefix and checks that its bytes
// hash to its key: no partial or wrong object was ever committed. It returns how many it read.
func checkObjects(t *testing.T, srv *s3server.Server, prefix string) int {
	t.Helper()
	client := srv.Client()
	pages := awss3.NewListObjectsV2Paginator(client, &awss3.ListObjectsV2Input{
		Bucket: aws.String(srv.Bucket), Prefix: aws.String(prefix + "/blobs/"),
	})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatalf("listing objects: %v", err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			want := key[strings.LastIndex(key, "/")+1:]
			out, err := client.GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String(srv.Bucket), Key: obj.Key})
			if err != nil {
				t.Fatalf("reading %s: %v", key, err)
			}
			h := sha256.New()
			_, err = io.Copy(h, out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatalf("reading %s: %v", key, err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want {
				t.Errorf("object %s holds bytes with digest %s", key, got)
			}
			n++
		}
	}
	return n
}

func TestPostgresStoppedAndRestartedWhilePullsRun(t *testing.T) {
	pg := startPrivatePostgres(t)
	dsn := freshSchema(t, pg.DSN())
	hub := fakehub.New(t)
	minio := startMinIO(t)
	const prefix = "pg-storm"
	blobURL := minio.URL(prefix)
	p := startProxy(t, hub, server.WithBlobStoreURL(blobURL), server.WithMetadataURL(dsn),
		server.WithPostgresPool(server.PostgresPool{MaxConns: 4, ConnectTimeout: 2 * time.Second}))

	s := stormThroughOutage(t, p, hub, outage{
		store: "metadata",
		stop:  pg.Crash,
		start: pg.Start,
		whileDown: func(t *testing.T) {
			if got := p.metric(t, `hubcache_degraded_requests_total{kind="blob",store="metadata"}`); got == "" {
				t.Error("no degraded request counted")
			}
		},
	})
	// Cached digests were served from MinIO all along: each warm blob was fetched once, when
	// the cache was warmed, however often it was pulled during the outage.
	counts := hub.Counts()
	for _, img := range s.warm {
		for _, d := range img.layers {
			if n := counts.BlobGET[d.String()]; n != 1 {
				t.Errorf("cached blob %s was fetched %d times from upstream, want once", d, n)
			}
		}
	}

	// Stop the proxy's fills, then scan: every row has its object, every object its digest.
	if err := p.srv.Close(); err != nil {
		t.Fatal(err)
	}
	blobs, meta := stores(t, blobURL, dsn)
	// What was filled while the rows could not be written is recorded by the pulls after.
	for _, imgs := range s.cold {
		for _, img := range imgs {
			for _, d := range img.layers {
				if !stored(t, blobs, d) || !linked(t, meta, "docker.io/"+img.repo, d) {
					t.Errorf("blob %s of %s is not stored and linked after recovery", d, img.repo)
				}
			}
		}
	}
	rows := checkNoDanglingRow(t, blobs, dsn)
	objects := checkObjects(t, minio, prefix)
	t.Logf("after the storm: %d rows, %d objects, all consistent", rows, objects)
}

func TestMinIOStoppedAndRestartedWhilePullsRun(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stop      func(t *testing.T, minio *s3server.Server)
		warmLayer int64
	}{
		{"MinIO shut down (SIGTERM) while clients pull", func(t *testing.T, minio *s3server.Server) {
			if err := minio.Stop(); err != nil {
				t.Fatal(err)
			}
		}, 0},
		// Cached layers of 32 MiB: reads from S3 are cut mid-stream by the kill.
		{"MinIO killed (SIGKILL) while clients pull", killMinIO, 32 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := fakehub.New(t)
			minio := startMinIO(t)
			dsn := freshSchema(t, baseDSN())
			const prefix = "s3-storm"
			blobURL := minio.URL(prefix)
			p := startProxy(t, hub, server.WithBlobStoreURL(blobURL), server.WithMetadataURL(dsn))

			stormThroughOutage(t, p, hub, outage{
				store:     "blob_store",
				stop:      func(t *testing.T) { tc.stop(t, minio) },
				warmLayer: tc.warmLayer,
				start: func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					if err := minio.Restart(ctx); err != nil {
						t.Fatal(err)
					}
				},
				whileDown: func(t *testing.T) {
					if got := p.metric(t, `hubcache_degraded_requests_total{kind="blob",store="blob_store"}`); got == "" {
						t.Error("no pass-through counted")
					}
				},
			})

			if err := p.srv.Close(); err != nil {
				t.Fatal(err)
			}
			blobs, _ := stores(t, blobURL, dsn)
			rows := checkNoDanglingRow(t, blobs, dsn)
			objects := checkObjects(t, minio, prefix)
			t.Logf("after the storm: %d rows, %d objects, all consistent", rows, objects)
		})
	}
}

// killMinIO kills the test's MinIO with SIGKILL, as a crash would: open connections are cut
// without an answer. s3server only stops gracefully, so the process is found among this test
// process's own children by its data directory, then Stop reaps it.
func killMinIO(t *testing.T, minio *s3server.Server) {
	t.Helper()
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	killed := 0
	for _, path := range cmdlines {
		raw, err := os.ReadFile(path)
		if err != nil || !slices.Contains(strings.Split(string(raw), "\x00"), minio.Dir) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil || parentOf(pid) != os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %d: %v", pid, err)
		}
		killed++
	}
	if killed != 1 {
		t.Fatalf("found %d MinIO processes serving %s, want 1", killed, minio.Dir)
	}
	if err := minio.Stop(); err != nil {
		t.Fatal(err)
	}
}

// parentOf returns the parent process id of pid, or -1.
func parentOf(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command name (in parentheses, which may hold spaces): state, ppid.
	rest := string(raw[strings.LastIndexByte(string(raw), ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}
