package pulls

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/test/bench/peer"
	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/pgtest"
	"github.com/hubcache/hubcache/test/s3server"
)

const (
	stampedeClients  = 100
	stampedeReplicas = 3
	stampedeLayers   = 4
	// stampedeLayer and the upstream's pace are scaled down together: one layer takes about a
	// second to come from upstream, as a real layer of tens of MiB does from Docker Hub, while
	// the hundredfold fan-out stays within what two cores serve in that second.
	stampedeLayer = 2 << 20
	// upstreamChunkDelay paces every upstream blob body: 32 KiB per 16 ms, 2 MiB/s per connection.
	upstreamChunkDelay = 16 * time.Millisecond
	stampedeRuns       = 3
)

// stampedeSide is three replicas of one registry in front of the hub.
type stampedeSide struct {
	name  string
	bases []string // per replica: the URL up to the repository name
	hc    *http.Client
}

// BenchmarkStampede is row 07: 100 clients pull one cold 4-layer image at once, spread over 3
// hubcache replicas (processes on MinIO + Postgres), against 3 distribution replicas on one
// MinIO bucket. Per side and run: upstream GETs per blob, and the stampede's wall time over
// that of one client pulling another cold image of the same shape through the same side.
func BenchmarkStampede(b *testing.B) {
	hub := fakehub.New(b)
	s3 := s3server.Start(b, s3server.MinIO)
	dsn, _ := pgtest.Schema(b, "hubcache_bench_")
	hc := &stampedeSide{name: "hubcache", hc: newHTTPClient(stampedeClients)}
	env := append(s3.Env(), "HUBCACHE_FILL_SECRET=bench-stampede")
	for i := range stampedeReplicas {
		p := startProxy(b, fmt.Sprintf("hubcache-%d", i), env,
			"--upstream=docker.io="+hub.URL(), "--blob-store="+s3.URL("hubcache"), "--metadata="+dsn)
		hc.bases = append(hc.bases, p.URL()+"/v2/docker.io/")
	}
	dist := &stampedeSide{name: "distribution", hc: newHTTPClient(stampedeClients)}
	for range stampedeReplicas {
		dist.bases = append(dist.bases, peer.Start(b, peer.Config{Upstream: hub.URL(), S3: s3, Prefix: "distribution"})+"/v2/")
	}

	type figures struct {
		single, stampede time.Duration
		perBlob          []int // upstream GETs of each layer and the config
		manifestGETs     int
		// single is the one cold pull's steps; replicas the stampede's, leader first.
		singleTimes pullTimes
		replicas    []replicaTimes
	}
	image := 0
	// cold pushes a new image of the row's shape, its blobs paced like a remote upstream.
	cold := func() (string, []v1.Hash) {
		image++
		repo := fmt.Sprintf("library/stampede%02d", image)
		img := fakehub.RandomImage(b, stampedeLayers, stampedeLayer, false)
		hub.Push(b, repo, "v1", img)
		m, err := img.Manifest()
		if err != nil {
			b.Fatal(err)
		}
		blobs := append([]v1.Hash{m.Config.Digest}, layerDigests(m)...)
		for _, d := range layerDigests(m) {
			hub.SetDigestMode(d, fakehub.Slow(0, upstreamChunkDelay))
		}
		return repo, blobs
	}
	measure := func(s *stampedeSide) figures {
		var f figures
		repo, _ := cold()
		start := time.Now()
		if err := timedPull(b.Context(), newRegClient(s.bases[0], s.hc), repo, true, start, &f.singleTimes); err != nil {
			b.Fatalf("%s, one cold pull: %v", s.name, err)
		}
		f.single = time.Since(start)

		repo, blobs := cold()
		hub.Reset()
		errs := make([]error, stampedeClients)
		times := make([]pullTimes, stampedeClients)
		var wg sync.WaitGroup
		start = time.Now()
		for i := range stampedeClients {
			c := newRegClient(s.bases[i%len(s.bases)], s.hc)
			// Every client checks sizes; one per replica also checks every digest (hashing
			// 100 copies would take the CPU the servers need on two cores).
			verify := i < len(s.bases)
			times[i].replica = i % len(s.bases)
			wg.Go(func() { errs[i] = timedPull(b.Context(), c, repo, verify, start, &times[i]) })
		}
		wg.Wait()
		f.stampede = time.Since(start)
		f.replicas = breakdown(times, len(s.bases))
		for i, err := range errs {
			if err != nil {
				b.Fatalf("%s, stampede client %d: %v", s.name, i, err)
			}
		}
		counts := hub.Counts()
		for _, d := range blobs {
			f.perBlob = append(f.perBlob, counts.BlobGET[d.String()])
		}
		f.manifestGETs = counts.TotalManifestGET()
		return f
	}

	var hcRatio, distRatio, hcGets, distGets, hcSingle, hcWall, distSingle, distWall table.Samples
	hcMaxGets, hcManifestGETs := 0, 0
	// The breakdown, in ms from the start: the leader is the replica whose clients got the
	// manifest first.
	var hcSingleManifest, hcLeaderManifest, hcFollowerManifest, hcLeaderDone, hcFollowerDone table.Samples
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) }
	record := func(s *stampedeSide, f figures) {
		total := 0
		for _, n := range f.perBlob {
			total += n
		}
		perBlob := float64(total) / float64(len(f.perBlob))
		ratio := f.stampede.Seconds() / f.single.Seconds()
		b.Logf("%s: one cold pull %s, stampede %s (%.2f×); upstream GETs per blob %v, manifest GETs %d",
			s.name, f.single.Round(time.Millisecond), f.stampede.Round(time.Millisecond), ratio, f.perBlob, f.manifestGETs)
		b.Logf("%s: one cold pull: manifest %d ms, layers' first byte %d–%d ms, last byte %d ms; stampede: %s",
			s.name, f.singleTimes.manifest.Milliseconds(), slices.Min(f.singleTimes.first).Milliseconds(), slices.Max(f.singleTimes.first).Milliseconds(),
			slices.Max(f.singleTimes.last).Milliseconds(), formatBreakdown(f.replicas))
		if s == hc {
			hcSingleManifest = append(hcSingleManifest, ms(f.singleTimes.manifest))
			hcLeaderManifest = append(hcLeaderManifest, ms(f.replicas[0].manifest))
			hcLeaderDone = append(hcLeaderDone, ms(f.replicas[0].lastMax))
			for _, r := range f.replicas[1:] {
				hcFollowerManifest = append(hcFollowerManifest, ms(r.manifest))
				hcFollowerDone = append(hcFollowerDone, ms(r.lastMax))
			}
			hcRatio, hcGets = append(hcRatio, ratio), append(hcGets, perBlob)
			hcSingle, hcWall = append(hcSingle, f.single.Seconds()), append(hcWall, f.stampede.Seconds())
			for _, n := range f.perBlob {
				hcMaxGets = max(hcMaxGets, n)
			}
			hcManifestGETs = max(hcManifestGETs, f.manifestGETs)
			return
		}
		distRatio, distGets = append(distRatio, ratio), append(distGets, perBlob)
		distSingle, distWall = append(distSingle, f.single.Seconds()), append(distWall, f.stampede.Seconds())
	}
	for b.Loop() {
		for run := range stampedeRuns {
			if run%2 == 0 {
				record(hc, measure(hc))
				record(dist, measure(dist))
			} else {
				record(dist, measure(dist))
				record(hc, measure(hc))
			}
		}
	}
	table.Record(b, table.Row{
		ID: "07-stampede",
		Measured: fmt.Sprintf("stampede: %d concurrent cold pulls of a %d-layer image (%d MiB layers, upstream paced to 2 MiB/s per connection) over %d hubcache replicas (processes, MinIO + Postgres)",
			stampedeClients, stampedeLayers, stampedeLayer>>20, stampedeReplicas),
		Compared: fmt.Sprintf("one cold pull through the same side; distribution v3, %d replicas on one MinIO bucket", stampedeReplicas),
		Result: fmt.Sprintf("hubcache: %.2f upstream GETs per blob, wall %.2f× one cold pull; distribution: %.1f GETs per blob, %.2f×",
			hcGets.Median(), hcRatio.Median(), distGets.Median(), distRatio.Median()),
		Spread:  fmt.Sprintf("%s; %s; %s; %s", hcGets.Range(2), hcRatio.Range(2), distGets.Range(1), distRatio.Range(2)),
		Runs:    len(hcRatio),
		Target:  "1 upstream GET per blob; wall ≤ 1.2× one cold pull",
		Verdict: table.Check(hcMaxGets == 1 && hcManifestGETs == 1 && hcRatio.Median() <= 1.2),
		Notes: fmt.Sprintf("one cold pull / stampede: hubcache %.2f s / %.2f s, distribution %.2f s / %.2f s; hubcache's upstream manifest GETs per stampede: at most %d; "+
			"hubcache's stampede by replica (ms from the start, medians): manifest %.0f on the replica that fetched it (one cold pull: %.0f), %.0f on the others; last client done %.0f there, %.0f on the others",
			hcSingle.Median(), hcWall.Median(), distSingle.Median(), distWall.Median(), hcManifestGETs,
			hcLeaderManifest.Median(), hcSingleManifest.Median(), hcFollowerManifest.Median(), hcLeaderDone.Median(), hcFollowerDone.Median()),
	})
}
