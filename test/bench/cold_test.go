package bench

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/test/fakehub"
)

// BenchmarkColdMiss (row 04) has one client GET a 256 MiB blob hubcache does not have, and,
// in the same run, the same client GET another fresh 256 MiB blob straight from the upstream
// (with a token fetched beforehand, as hubcache holds one too). The upstream is the in-memory
// fake Docker Hub on loopback: it writes a blob from memory in one call, far faster than any
// real Docker Hub link, so it is not what limits either side. Each run pushes two new blobs,
// so both sides are cold every time.
func BenchmarkColdMiss(b *testing.B) {
	hub := fakehub.New(b)
	const repo = "library/cold"
	hc := startProxy(b, hub.URL(), b.TempDir(), nil)
	// The proxy's token for the repository: fetched once, before the timed runs.
	warm := pushBlob(b, hub, repo, "warm", 1<<10, 99)
	verified(b, hc.base+"/v2/docker.io/"+repo+"/blobs/"+warm.String(), warm)
	direct := upstreamClient(b, hub, repo)
	verifiedWith(b, direct, hub.URL()+"/v2/"+repo+"/blobs/"+warm.String(), warm)

	for b.Loop() {
		coldRow(b, hub, hc, direct, repo, nil, row{
			id:       "04-cold-miss",
			measured: "cold miss, 256 MiB, 1 client",
			compared: "the same GET straight from the upstream (in-memory fake Docker Hub on loopback)",
		})
		// The same with the upstream paced as a fast real link: what a miss costs a client
		// of Docker Hub, rather than what SHA-256 costs beside a copy from memory.
		paced := fakehub.Slow(0, time.Duration(float64(time.Second)*32*1024/pacedRate))
		coldRow(b, hub, hc, direct, repo, &paced, row{
			id:       "04b-cold-miss-paced",
			measured: fmt.Sprintf("cold miss, 256 MiB, 1 client, upstream paced to %.0f MB/s (a fast Docker Hub link)", pacedRate/1e6),
			compared: "the same GET straight from the same paced upstream",
		})
	}
}

// pacedRate is row 04b's upstream rate, in bytes per second.
const pacedRate = 250e6

type row struct{ id, measured, compared string }

// coldRow measures one cold-miss row: runs pairs of fresh blobs, one straight from the hub and
// one through the proxy, with the hub in mode (nil: as fast as it goes).
func coldRow(b *testing.B, hub *fakehub.Hub, hc *process, direct *http.Client, repo string, mode *fakehub.Mode, r row) {
	b.Helper()
	var upFirst, hcFirst, upTotal, hcTotal table.Samples
	for i := range runs {
		dUp := pushBlob(b, hub, repo, fmt.Sprintf("%s-up%d", r.id, i), blobSize, uint64(len(r.id)*1000+200+2*i))
		dHC := pushBlob(b, hub, repo, fmt.Sprintf("%s-hc%d", r.id, i), blobSize, uint64(len(r.id)*1000+201+2*i))
		if mode != nil {
			hub.SetDigestMode(dUp, *mode)
			hub.SetDigestMode(dHC, *mode)
		}
		up, err := getWith(direct, hub.URL()+"/v2/"+repo+"/blobs/"+dUp.String(), blobSize)
		if err != nil {
			b.Fatal(err)
		}
		t, err := get(hc.base+"/v2/docker.io/"+repo+"/blobs/"+dHC.String(), blobSize)
		if err != nil {
			b.Fatal(err)
		}
		upFirst = append(upFirst, ms(up.first))
		hcFirst = append(hcFirst, ms(t.first))
		upTotal = append(upTotal, ms(up.last))
		hcTotal = append(hcTotal, ms(t.last))
	}
	extra := make(table.Samples, len(hcFirst))
	for i := range hcFirst {
		extra[i] = hcFirst[i] - upFirst[i]
	}
	total := table.Ratios(hcTotal, upTotal)
	table.Record(b, table.Row{
		ID:       r.id,
		Measured: r.measured,
		Compared: r.compared,
		Result:   fmt.Sprintf("first byte %+.1f ms; total %.2f×", extra.Median(), total.Median()),
		Spread:   fmt.Sprintf("%+.1f–%+.1f ms; %s", extra.Min(), extra.Max(), total.Range(2)),
		Runs:     len(total),
		Target:   "first byte ≤ upstream's + 5 ms; total ≤ 1.1×",
		Verdict:  table.Check(extra.Median() <= 5 && total.Median() <= 1.1),
		Notes: fmt.Sprintf("medians: first byte hubcache %.1f ms, upstream %.1f ms; total hubcache %.0f ms (%.0f MB/s), upstream %.0f ms (%.0f MB/s)",
			hcFirst.Median(), upFirst.Median(), hcTotal.Median(), blobSize/hcTotal.Median()/1e3, upTotal.Median(), blobSize/upTotal.Median()/1e3),
	})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// upstreamClient is a client of the hub with a pull token for repo, fetched now.
func upstreamClient(b *testing.B, hub *fakehub.Hub, repo string) *http.Client {
	b.Helper()
	r, err := name.NewRepository(hub.Host()+"/"+repo, name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	rt, err := transport.NewWithContext(context.Background(), r.Registry, authn.Anonymous, client.Transport,
		[]string{r.Scope(transport.PullScope)})
	if err != nil {
		b.Fatal(err)
	}
	return &http.Client{Transport: rt}
}
