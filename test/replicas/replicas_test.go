package replicas

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/jackc/pgx/v5"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/s3"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/pgtest"
	"github.com/hubcache/hubcache/test/s3server"
)

const fillSecret = "replicas-test-fill-secret"

// cluster is N proxy processes sharing one bucket and one Postgres schema.
type cluster struct {
	hub      *fakehub.Hub
	s3       *s3server.Server
	dsn      string
	store    *s3.Store // the test's own view of the bucket
	replicas []*process
}

// newCluster starts n replicas; extra flags are added to each.
func newCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{hub: fakehub.New(t), s3: s3server.Start(t, s3server.MinIO)}
	c.dsn, _ = pgtest.Schema(t, "hubcache_test_")
	blobURL := c.s3.URL("replicas")
	cfg, err := s3.ParseURL(blobURL)
	if err != nil {
		t.Fatal(err)
	}
	c.store, err = s3.New(t.Context(), cfg, s3.WithStaticCredentials(c.s3.AccessKey, c.s3.SecretKey))
	if err != nil {
		t.Fatal(err)
	}
	env := append(c.s3.Env(), "HUBCACHE_FILL_SECRET="+fillSecret)
	for i := range n {
		args := append([]string{"proxy",
			"--upstream=docker.io=" + c.hub.URL(),
			"--blob-store=" + blobURL,
			"--metadata=" + c.dsn,
			"--fill-lease-ttl=2s",
			"--log-level=debug"}, extra...)
		c.replicas = append(c.replicas, start(t, fmt.Sprintf("proxy-%d", i), env, args...))
	}
	return c
}

// replicaAt returns the replica listening on addr.
func (c *cluster) replicaAt(addr string) *process {
	for _, r := range c.replicas {
		if r.Addr == addr {
			return r
		}
	}
	return nil
}

// getBlob reads a blob through base and checks its digest; progress counts bytes received.
func getBlob(ctx context.Context, base, repo string, d v1.Hash, progress *atomic.Int64) error {
	return getBlobWith(ctx, http.DefaultClient, base, repo, d, progress)
}

// getBlobWith is getBlob with client (mutual TLS).
func getBlobWith(ctx context.Context, client *http.Client, base, repo string, d v1.Hash, progress *atomic.Int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/docker.io/"+repo+"/blobs/"+d.String(), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET blob %s: status %d", d, resp.StatusCode)
	}
	h := sha256.New()
	w := io.Writer(h)
	if progress != nil {
		w = io.MultiWriter(h, counter{progress})
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET blob %s: %w", d, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return fmt.Errorf("GET blob %s: body has digest sha256:%s", d, got)
	}
	return nil
}

type counter struct{ n *atomic.Int64 }

func (c counter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// pull fetches repo:tag's manifest and every blob it names through base, checking digests.
func pull(ctx context.Context, base, repo, tag string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/docker.io/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET manifest: status %d", resp.StatusCode)
	}
	m, err := v1.ParseManifest(resp.Body)
	if err != nil {
		return fmt.Errorf("parsing manifest: %w", err)
	}
	blobs := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest)
	}
	for _, d := range blobs {
		if err := getBlob(ctx, base, repo, d, nil); err != nil {
			return err
		}
	}
	return nil
}

func imageBlobs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func TestSixtyPullsSpreadOverThreeReplicasFetchEachBlobAndTheManifestFromUpstreamOnce(t *testing.T) {
	c := newCluster(t, 3)
	img := fakehub.RandomImage(t, 3, 64<<20, false)
	c.hub.Push(t, "library/big", "v1", img)

	const pulls = 60
	var wg sync.WaitGroup
	errs := make([]error, pulls)
	for i := range pulls {
		wg.Go(func() {
			errs[i] = pull(t.Context(), c.replicas[i%len(c.replicas)].URL(), "library/big", "v1")
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("pull %d through %s: %v", i, c.replicas[i%len(c.replicas)].Name, err)
		}
	}
	counts := c.hub.Counts()
	for _, d := range imageBlobs(t, img) {
		if n := counts.BlobGET[d.String()]; n != 1 {
			t.Errorf("upstream saw %d GETs of blob %s, want 1", n, d)
		}
	}
	// Docker Hub counts manifest GETs against the pull limit: a cold tag costs one, whatever
	// the number of replicas (the manifest lease).
	if n := counts.TotalManifestGET(); n != 1 {
		t.Errorf("upstream saw %d manifest GETs, want 1: %v", n, counts.ManifestGET)
	}
	t.Logf("upstream: %d manifest GETs, %d blob GETs, %d blob HEADs", counts.TotalManifestGET(), counts.TotalBlobGET(), counts.TotalBlobHEAD())
}

func TestKillingTheFillingReplicaLeavesNoPartialObjectAndEveryClientGetsTheBlob(t *testing.T) {
	c := newCluster(t, 3)
	img := fakehub.RandomImage(t, 1, 32<<20, false)
	c.hub.Push(t, "library/slow", "v1", img)
	layer := imageBlobs(t, img)[1]
	// About five seconds of fill: long enough to kill its holder in the middle.
	c.hub.SetDigestMode(layer, fakehub.Slow(0, 5*time.Millisecond))

	type result struct {
		via *process
		err error
	}
	const perReplica = 2
	results := make(chan result, perReplica*len(c.replicas))
	var progress atomic.Int64
	for _, r := range c.replicas {
		for range perReplica {
			go func() {
				results <- result{via: r, err: getBlob(t.Context(), r.URL(), "library/slow", layer, &progress)}
			}()
		}
	}

	holder := waitForHolder(t, c, layer)
	deadline := time.Now().Add(2 * time.Minute)
	for progress.Load() < 1<<20 {
		if time.Now().After(deadline) {
			t.Fatal("no client received a byte of the fill within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkNothingPartial(t, c, layer, "while the fill runs")
	t.Logf("killing %s, the lease holder, after %d bytes reached clients", holder.Name, progress.Load())
	holder.Kill(t)
	c.hub.SetDigestMode(layer, fakehub.Normal())
	checkNothingPartial(t, c, layer, "right after the kill")

	var survivor *process
	for _, r := range c.replicas {
		if r != holder {
			survivor = r
		}
	}
	for range perReplica * len(c.replicas) {
		res := <-results
		if res.err == nil {
			continue
		}
		if res.via != holder {
			t.Logf("a client of %s failed (%v); retrying", res.via.Name, res.err)
		}
		if err := getBlob(t.Context(), survivor.URL(), "library/slow", layer, nil); err != nil {
			t.Errorf("retry through %s after %v: %v", survivor.Name, res.err, err)
		}
	}
	size, err := storedSoon(t.Context(), c, layer)
	if err != nil {
		t.Fatalf("the blob is not in the bucket after the pulls: %v", err)
	}
	checkStored(t, c, layer, size)

	// The dead holder's multipart upload is abandoned, never completed; cleanup aborts it.
	if _, err := c.store.CleanupAbandoned(t.Context(), 0); err != nil {
		t.Fatalf("CleanupAbandoned: %v", err)
	}
	out, err := c.s3.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(c.s3.Bucket)})
	if err != nil {
		t.Fatalf("listing uploads: %v", err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left after cleanup", len(out.Uploads))
	}
}

// waitForHolder returns the replica holding d's fill lease.
func waitForHolder(t *testing.T, c *cluster, d v1.Hash) *process {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var addr string
		err := conn.QueryRow(t.Context(), `SELECT addr FROM fill_leases WHERE digest = $1`, d.String()).Scan(&addr)
		if err == nil {
			if p := c.replicaAt(addr); p != nil {
				return p
			}
			t.Fatalf("the lease holder %s is none of the replicas", addr)
		}
		if !errors.Is(err, pgx.ErrNoRows) && !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("reading fill_leases: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no replica took the fill lease within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkNothingPartial asserts that the bucket has no object for d, or only the whole verified
// blob.
func checkNothingPartial(t *testing.T, c *cluster, d v1.Hash, when string) {
	t.Helper()
	size, err := c.store.Stat(t.Context(), d)
	if errors.Is(err, blobstore.ErrNotFound) {
		return
	}
	if err != nil {
		t.Fatalf("%s: Stat: %v", when, err)
	}
	checkStored(t, c, d, size)
}

// storedSoon waits (at most 30 s) for d to be in the bucket and returns its size: a client gets
// its last byte as soon as the digest checks out, and the replica that filled the blob
// completes its upload after that.
func storedSoon(ctx context.Context, c *cluster, d v1.Hash) (int64, error) {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		size, err := c.store.Stat(ctx, d)
		if err == nil || !errors.Is(err, blobstore.ErrNotFound) || time.Now().After(deadline) {
			return size, err
		}
	}
}

func checkStored(t *testing.T, c *cluster, d v1.Hash, size int64) {
	t.Helper()
	rc, err := c.store.Open(t.Context(), d, 0, -1)
	if err != nil {
		t.Fatalf("opening the stored blob: %v", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("reading the stored blob: %v", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex || n != size {
		t.Fatalf("the bucket holds %d bytes with digest sha256:%s for %s", n, got, d)
	}
}
