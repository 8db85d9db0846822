package pulls

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubcache/hubcache/test/bench/peer"
	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/pgtest"
)

const (
	// manifestClients is the row's concurrency: 32 clients, each with its own connection.
	manifestClients = 32
	// manifestRepos spreads the requests over this many repositories (one tag each), so no
	// single row or file is the only thing asked for.
	manifestRepos = 16
	manifestRuns  = 5
	// manifestWindow is how long one side is measured in one run.
	manifestWindow = 2 * time.Second
)

// BenchmarkManifestsSQLite is row 05: warm manifest requests/s of hubcache on SQLite.
func BenchmarkManifestsSQLite(b *testing.B) {
	benchManifests(b, "05-manifests-sqlite", "SQLite", func(string) []string { return nil })
}

// BenchmarkManifestsPostgres is row 06: warm manifest requests/s of hubcache on Postgres.
func BenchmarkManifestsPostgres(b *testing.B) {
	benchManifests(b, "06-manifests-postgres", "Postgres", func(name string) []string {
		dsn, _ := pgtest.Schema(b, "hubcache_bench_")
		return []string{"--metadata=" + dsn, "--fill-secret=bench-" + name}
	})
}

// manifestSide is one server measured: where its manifests are, and its per-run figures.
type manifestSide struct {
	name   string
	tags   []string // URLs of the manifests by tag
	digest []string // URLs of the same manifests by digest
	hc     *http.Client
}

// benchManifests measures, in alternation, 32 clients GETting warm manifests from hubcache
// and from distribution v3 in proxy mode (files), by digest and by tag. Distribution's proxy
// revalidates a tag upstream on every request (a HEAD: its tag service asks the remote first
// and falls back to the local copy only when the remote fails), so the like-for-like tag
// figure is hubcache with --tag-ttl=0, which also HEADs upstream on every request that is not
// joined to one already in flight; hubcache's default (a 5 min TTL) is reported beside it.
func benchManifests(b *testing.B, id, store string, storeArgs func(name string) []string) {
	hub := fakehub.New(b)
	digests := make([]string, manifestRepos)
	for i := range manifestRepos {
		img := fakehub.RandomImage(b, 2, 1<<10, false)
		d := hub.Push(b, repoName(i), "latest", img)
		digests[i] = d.String()
	}
	dist := peer.Start(b, peer.Config{Upstream: hub.URL()})
	hcDefault := startProxy(b, "hubcache", nil, append(storeArgs("default"), "--upstream=docker.io="+hub.URL())...)
	hcEvery := startProxy(b, "hubcache-ttl0", nil, append(storeArgs("ttl0"), "--upstream=docker.io="+hub.URL(), "--tag-ttl=0")...)

	side := func(name, base string) *manifestSide {
		s := &manifestSide{name: name, hc: newHTTPClient(manifestClients)}
		for i := range manifestRepos {
			s.tags = append(s.tags, base+repoName(i)+"/manifests/latest")
			s.digest = append(s.digest, base+repoName(i)+"/manifests/"+digests[i])
		}
		return s
	}
	hc := side("hubcache", hcDefault.URL()+"/v2/docker.io/")
	hc0 := side("hubcache --tag-ttl=0", hcEvery.URL()+"/v2/docker.io/")
	peerSide := side("distribution", dist+"/v2/")
	// Warm every cache: each manifest once by tag and once by digest, then a short load so
	// connections are open and every process is past its first requests.
	for _, s := range []*manifestSide{hc, hc0, peerSide} {
		for _, urls := range [][]string{s.tags, s.digest} {
			if _, err := load(b.Context(), s.hc, urls, 1, 0); err != nil {
				b.Fatalf("warming %s: %v", s.name, err)
			}
			if _, err := load(b.Context(), s.hc, urls, manifestClients, 200*time.Millisecond); err != nil {
				b.Fatalf("warming %s: %v", s.name, err)
			}
		}
	}
	hub.Reset()

	var hcDigest, peerDigest, hcTag, hc0Tag, peerTag table.Samples
	measure := func(s *manifestSide, urls []string, into *table.Samples) {
		rate, err := load(b.Context(), s.hc, urls, manifestClients, manifestWindow)
		if err != nil {
			b.Fatalf("%s: %v", s.name, err)
		}
		*into = append(*into, rate)
	}
	for b.Loop() {
		for run := range manifestRuns {
			// Alternate which side goes first, so a slow moment of the machine is shared.
			if run%2 == 0 {
				measure(hc, hc.digest, &hcDigest)
				measure(peerSide, peerSide.digest, &peerDigest)
				measure(hc, hc.tags, &hcTag)
				measure(hc0, hc0.tags, &hc0Tag)
				measure(peerSide, peerSide.tags, &peerTag)
			} else {
				measure(peerSide, peerSide.digest, &peerDigest)
				measure(hc, hc.digest, &hcDigest)
				measure(peerSide, peerSide.tags, &peerTag)
				measure(hc0, hc0.tags, &hc0Tag)
				measure(hc, hc.tags, &hcTag)
			}
		}
	}
	counts := hub.Counts()
	byDigest := table.Ratios(hcDigest, peerDigest)
	byTag := table.Ratios(hc0Tag, peerTag)
	byTagDefault := table.Ratios(hcTag, peerTag)
	table.Record(b, table.Row{
		ID: id,
		Measured: fmt.Sprintf("warm manifests, %d concurrent clients over %d repositories, by digest and by tag: hubcache on %s (a process, log at info)",
			manifestClients, manifestRepos, store),
		Compared: "distribution v3 in proxy mode (files) in front of the same fake hub",
		Result: fmt.Sprintf("by digest %.2f×, by tag %.2f× distribution (both asking upstream on every tag request); by tag at the default 5 min TTL %.1f×",
			byDigest.Median(), byTag.Median(), byTagDefault.Median()),
		Spread:  fmt.Sprintf("%s; %s; %s", byDigest.Range(2), byTag.Range(2), byTagDefault.Range(1)),
		Runs:    len(byDigest),
		Target:  "≥ 1.0× distribution requests/s",
		Verdict: table.Check(byDigest.Median() >= 1 && byTag.Median() >= 1),
		Notes: fmt.Sprintf("requests/s by digest: hubcache %.0f, distribution %.0f; by tag: hubcache %.0f (--tag-ttl=0: %.0f), distribution %.0f; upstream HEADs while measuring: %d (distribution: one per tag request; hubcache --tag-ttl=0: one per revalidation in flight)",
			hcDigest.Median(), peerDigest.Median(), hcTag.Median(), hc0Tag.Median(), peerTag.Median(), counts.TotalManifestHEAD()),
	})
}

func repoName(i int) string { return fmt.Sprintf("library/m%02d", i) }

// load runs clients goroutines GETting urls round robin for d (d = 0: each URL once) and
// returns the completed requests per second. Every answer must be 200.
func load(ctx context.Context, hc *http.Client, urls []string, clients int, d time.Duration) (float64, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	step := 1
	if d == 0 {
		step = clients // each URL once, shared out between the clients
	}
	for c := range clients {
		wg.Go(func() {
			for i := c; ; i += step {
				if d > 0 && time.Now().After(stop) || d == 0 && i >= len(urls) {
					return
				}
				if err := get(ctx, hc, urls[i%len(urls)]); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), firstErr
}

func get(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return err
}
