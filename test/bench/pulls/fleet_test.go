package pulls

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/test/fakehub"
)

// The fleet model (docs/bench.md, row 14, says why each number is what it is).
const (
	fleetNodes = 200
	// fleetImages are the repositories the fleet runs; the first fleetDaemonSets run on every
	// node (log shipper, metrics agent, …), the others are Deployments.
	fleetImages     = 50
	fleetDaemonSets = 3
	// podsPerHour are the Deployment Pods started an hour, each on a node drawn at random, its
	// image drawn by popularity (Zipf, s = 1, over the Deployment images).
	podsPerHour = 300
	// replacementsPerDay are nodes replaced a day (autoscaling, spot reclaims, upgrades): a new
	// node starts with an empty image cache and runs every DaemonSet at once.
	replacementsPerDay = 50
	// updateEvery is the mean time between two updates of one image upstream (Poisson). Images
	// pulled with imagePullPolicy Always keep their tag (":latest"), which moves to the new
	// digest; the others roll to a new version tag (":v2"), which new Pods use from then on. A
	// DaemonSet update rolls onto every node, one node every daemonSetStep.
	updateEvery   = 48 * time.Hour
	daemonSetStep = 10 * time.Second
	// alwaysEvery: every fifth Deployment image by popularity, from the third on, is pulled
	// with Always; the rest with IfNotPresent (Kubernetes' default for a versioned tag).
	alwaysEvery, alwaysFirst = 5, 2
	// The first day warms the node caches and hubcache; the second is counted.
	warmupDays, countedDays = 1, 1
	// fleetLayer is the size of each image's one layer: only manifests are counted.
	fleetLayer = 1 << 10
	fleetRuns  = 3
	day        = 24 * time.Hour
)

type fleetImage struct {
	repo      string
	always    bool
	daemonSet bool
	weight    float64 // share of Deployment Pod starts
}

// tag is the tag version v (0-based) of the image is pulled by.
func (im *fleetImage) tag(v int) string {
	if im.always {
		return "latest"
	}
	return fmt.Sprintf("v%d", v+1)
}

type eventKind int

const (
	podStart eventKind = iota
	nodeReplaced
	imageUpdated
)

type fleetEvent struct {
	at    time.Duration // since the start of the simulation
	kind  eventKind
	node  int // podStart, nodeReplaced
	image int // podStart, imageUpdated
	// ref is what a podStart pulls: image at the version current at that time.
	tag string
}

// fleetPlan is one simulated stretch of days, the same for both sides of a run.
type fleetPlan struct {
	images []*fleetImage
	// versions[i][v] is version v of image i: one more than the plan updates it.
	versions [][]v1.Image
	events   []fleetEvent
	// countFrom is when counting starts (after the warm-up).
	countFrom time.Duration
}

func newFleetPlan(b *testing.B, seed uint64, images []*fleetImage) *fleetPlan {
	b.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x6875626361636865))
	total := time.Duration(warmupDays+countedDays) * day
	p := &fleetPlan{images: images, countFrom: time.Duration(warmupDays) * day}
	var evs []fleetEvent
	expo := func(perDay float64) time.Duration {
		return time.Duration(rng.ExpFloat64() / perDay * float64(day))
	}
	for t := expo(podsPerHour * 24); t < total; t += expo(podsPerHour * 24) {
		evs = append(evs, fleetEvent{at: t, kind: podStart, node: rng.IntN(fleetNodes), image: pickImage(rng, images)})
	}
	for t := expo(replacementsPerDay); t < total; t += expo(replacementsPerDay) {
		evs = append(evs, fleetEvent{at: t, kind: nodeReplaced, node: rng.IntN(fleetNodes)})
	}
	perDay := float64(day) / float64(updateEvery)
	for i := range images {
		for at := expo(perDay); at < total; at += expo(perDay) {
			evs = append(evs, fleetEvent{at: at, kind: imageUpdated, image: i})
			if images[i].daemonSet {
				for n := range fleetNodes {
					evs = append(evs, fleetEvent{at: at + time.Duration(n+1)*daemonSetStep, kind: podStart, node: n, image: i})
				}
			}
		}
	}
	slices.SortStableFunc(evs, func(a, b fleetEvent) int { return cmp.Compare(a.at, b.at) })
	// Resolve which tag each Pod start pulls, and expand replacements into DaemonSet starts.
	version := make([]int, len(images))
	for _, e := range evs {
		switch e.kind {
		case imageUpdated:
			version[e.image]++
			p.events = append(p.events, e)
		case nodeReplaced:
			p.events = append(p.events, e)
			for i, im := range images {
				if im.daemonSet {
					p.events = append(p.events, fleetEvent{at: e.at, kind: podStart, node: e.node, image: i, tag: im.tag(version[i])})
				}
			}
		case podStart:
			e.tag = images[e.image].tag(version[e.image])
			p.events = append(p.events, e)
		}
	}
	for i := range images {
		var vs []v1.Image
		for range version[i] + 1 {
			vs = append(vs, fakehub.RandomImage(b, 1, fleetLayer, false))
		}
		p.versions = append(p.versions, vs)
	}
	return p
}

func pickImage(rng *rand.Rand, images []*fleetImage) int {
	x := rng.Float64()
	for i, im := range images {
		if x < im.weight {
			return i
		}
		x -= im.weight
	}
	return len(images) - 1
}

// fleetImageSet names the images, their popularity and pull policy.
func fleetImageSet() []*fleetImage {
	var out []*fleetImage
	var sum float64
	for i := range fleetImages {
		im := &fleetImage{repo: fmt.Sprintf("library/app%02d", i), daemonSet: i < fleetDaemonSets}
		if !im.daemonSet {
			rank := i - fleetDaemonSets // 0 is the most popular
			im.weight = 1 / float64(rank+1)
			im.always = rank%alwaysEvery == alwaysFirst
			sum += im.weight
		}
		out = append(out, im)
	}
	for _, im := range out {
		im.weight /= sum
	}
	return out
}

// node is one node's containerd image store: image names and the content it holds.
type node struct {
	images  map[string]v1.Hash // "repo:tag" → manifest digest
	content map[v1.Hash]bool
	client  *regClient
}

// start runs a Pod of repo:tag with the image's pull policy, as the kubelet and containerd
// do: IfNotPresent pulls only an image name the node lacks; a pull resolves the tag with a
// HEAD and GETs the manifest (by digest) and the blobs only when the node lacks that content.
// Docker Hub counts the manifest GETs.
func (n *node) start(ctx context.Context, im *fleetImage, tag string) error {
	name := im.repo + ":" + tag
	if _, ok := n.images[name]; ok && !im.always {
		return nil
	}
	d, err := n.client.resolve(ctx, im.repo, tag)
	if err != nil {
		return err
	}
	if !n.content[d] {
		m, _, err := n.client.manifest(ctx, im.repo, d.String())
		if err != nil {
			return err
		}
		for _, bd := range append([]v1.Hash{m.Config.Digest}, layerDigests(m)...) {
			if n.content[bd] {
				continue
			}
			if err := n.client.blob(ctx, im.repo, bd); err != nil {
				return err
			}
			n.content[bd] = true
		}
		n.content[d] = true
	}
	n.images[name] = d
	return nil
}

// fleetResult is what the hub counted over the counted days.
type fleetResult struct {
	manifestGET, manifestHEAD int
	newDigests                int // manifests pushed during the counted days
	nodePulls                 int // pulls that fetched a manifest the node lacked
	wall                      time.Duration
}

// simulate runs the plan against a fresh hub. base returns the registry URL the nodes pull
// from ("" pulls straight from the hub); setClock is told the simulated time before each
// batch.
func simulate(b *testing.B, p *fleetPlan, via func(hub *fakehub.Hub, now func() time.Time) string) fleetResult {
	b.Helper()
	ctx := b.Context()
	hub := fakehub.New(b)
	for i, im := range p.images {
		hub.Push(b, im.repo, im.tag(0), p.versions[i][0])
	}
	start := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	var simNow atomic.Int64
	simNow.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, simNow.Load()).UTC() }
	base := hub.URL() + "/v2/"
	if via != nil {
		base = via(hub, now)
	}
	hc := newHTTPClient(64)
	newNode := func() *node {
		return &node{images: map[string]v1.Hash{}, content: map[v1.Hash]bool{}, client: newRegClient(base, hc)}
	}
	nodes := make([]*node, fleetNodes)
	for i := range nodes {
		nodes[i] = newNode()
	}
	version := make([]int, len(p.images))
	var res fleetResult
	var pulls atomic.Int64
	counting := false
	began := time.Now()
	// Events of one simulated minute run at once, each node's in order on its own goroutine;
	// an image update is a barrier, so a Pod start after it sees the new version.
	for i := 0; i < len(p.events); {
		e := p.events[i]
		if !counting && e.at >= p.countFrom {
			counting = true
			hub.Reset()
			pulls.Store(0)
		}
		simNow.Store(start.Add(e.at).UnixNano())
		if e.kind == imageUpdated {
			im := p.images[e.image]
			version[e.image]++
			hub.Push(b, im.repo, im.tag(version[e.image]), p.versions[e.image][version[e.image]])
			if counting {
				res.newDigests++
			}
			i++
			continue
		}
		batch := map[int][]fleetEvent{}
		j := i
		for ; j < len(p.events); j++ {
			f := p.events[j]
			if f.kind == imageUpdated || f.at-e.at >= time.Minute || (!counting && f.at >= p.countFrom) {
				break
			}
			batch[f.node] = append(batch[f.node], f)
		}
		i = j
		var wg sync.WaitGroup
		errs := make(chan error, len(batch))
		for n, evs := range batch {
			// Each goroutine owns its node's slot for the batch.
			wg.Go(func() {
				for _, f := range evs {
					if f.kind == nodeReplaced {
						nodes[n] = newNode()
						continue
					}
					nd := nodes[n]
					had := len(nd.content)
					if err := nd.start(ctx, p.images[f.image], f.tag); err != nil {
						errs <- fmt.Errorf("node %d, %s:%s: %w", n, p.images[f.image].repo, f.tag, err)
						return
					}
					if len(nd.content) > had {
						pulls.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	res.wall = time.Since(began)
	c := hub.Counts()
	res.manifestGET, res.manifestHEAD = c.TotalManifestGET(), c.TotalManifestHEAD()
	res.nodePulls = int(pulls.Load())
	return res
}

// viaHubcache runs the proxy in this process with its clock on simulated time, so its tag TTL
// (5 min), visibility TTL (10 min) and negative TTL are production's, unscaled.
func viaHubcache(b *testing.B) func(hub *fakehub.Hub, now func() time.Time) string {
	return func(hub *fakehub.Hub, now func() time.Time) string {
		u, err := url.Parse(hub.URL())
		if err != nil {
			b.Fatal(err)
		}
		srv, err := server.New(context.Background(), b.TempDir(), map[string]*url.URL{"docker.io": u},
			server.WithDockerConfigDir(b.TempDir()),
			server.WithClock(now),
			server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		)
		if err != nil {
			b.Fatalf("building the proxy: %v", err)
		}
		b.Cleanup(func() { _ = srv.Close() })
		hs := httptest.NewServer(srv.Handler())
		b.Cleanup(hs.Close)
		return hs.URL + "/v2/docker.io/"
	}
}

// BenchmarkFleetSavings is row 14: the Docker Hub pulls (manifest GETs) of a simulated fleet
// pulling straight from the hub and through hubcache, over one counted day after a warm-up
// day. Each run draws a new day (its own seed); both sides of a run replay the same day.
func BenchmarkFleetSavings(b *testing.B) {
	images := fleetImageSet()
	var savings, directGET, hcGET, hcHEAD, directHEAD, perDigest, walls table.Samples
	var pullsPerDigest table.Samples
	for b.Loop() {
		for run := range fleetRuns {
			p := newFleetPlan(b, uint64(run+1), images)
			var direct, hc fleetResult
			if run%2 == 0 {
				direct = simulate(b, p, nil)
				hc = simulate(b, p, viaHubcache(b))
			} else {
				hc = simulate(b, p, viaHubcache(b))
				direct = simulate(b, p, nil)
			}
			b.Logf("run %d: direct %d GET %d HEAD (%d node pulls), hubcache %d GET %d HEAD, %d new digests; %s and %s of wall time for %d simulated days",
				run, direct.manifestGET, direct.manifestHEAD, direct.nodePulls, hc.manifestGET, hc.manifestHEAD, hc.newDigests,
				direct.wall.Round(time.Second), hc.wall.Round(time.Second), warmupDays+countedDays)
			savings = append(savings, 100*(1-float64(hc.manifestGET)/float64(direct.manifestGET)))
			directGET = append(directGET, float64(direct.manifestGET))
			directHEAD = append(directHEAD, float64(direct.manifestHEAD))
			hcGET = append(hcGET, float64(hc.manifestGET))
			hcHEAD = append(hcHEAD, float64(hc.manifestHEAD))
			perDigest = append(perDigest, float64(hc.manifestGET)/float64(hc.newDigests))
			pullsPerDigest = append(pullsPerDigest, float64(direct.manifestGET)/float64(hc.newDigests))
			walls = append(walls, hc.wall.Seconds())
		}
	}
	sim := time.Duration(warmupDays+countedDays) * day
	table.Record(b, table.Row{
		ID:       "14-fleet-savings",
		Measured: fmt.Sprintf("Docker Hub pulls (manifest GETs) of a simulated fleet over one day: %d nodes, %d Pods/h over %d images (%d DaemonSets), each image updated every %s on average, %d node replacements a day; after a warm-up day", fleetNodes, podsPerHour, fleetImages, fleetDaemonSets, updateEvery, replacementsPerDay),
		Compared: "the same day pulled straight from the fake Docker Hub",
		Result:   fmt.Sprintf("%.2f%% fewer pulls through hubcache", savings.Median()),
		Spread:   savings.Range(2) + "%",
		Runs:     len(savings),
		Target:   "≥ 99% fewer",
		Verdict:  table.Check(savings.Median() >= 99),
		Notes: fmt.Sprintf("manifest GETs a day: direct %.0f (%s; %.0f per new digest), hubcache %.0f (%s; %.2f per new digest); HEADs (free): direct %.0f, hubcache %.0f; a simulated %s takes %.0f s through hubcache (clock compressed ~%.0f×)",
			directGET.Median(), directGET.Range(0), pullsPerDigest.Median(), hcGET.Median(), hcGET.Range(0), perDigest.Median(),
			directHEAD.Median(), hcHEAD.Median(), sim, walls.Median(), sim.Seconds()/walls.Median()),
	})
}
