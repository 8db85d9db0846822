package bench

import (
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hubcache/hubcache/test/bench/peer"
	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/testenv"
)

// racyWindow is how old a stored object must be for a read that hashes it to vouch for
// later reads (proxy/cache).
const racyWindow = 2100 * time.Millisecond

// BenchmarkWarmBlob serves a cached 256 MiB blob to 1 client and to 16 at once (rows 01 and
// 02). The sides, run i of each back to back: a plain http.ServeFile of hubcache's own file
// for the blob over loopback (the limit: sendfile, no checks), the hubcache proxy binary
// (files), and distribution v3 in proxy mode on the filesystem with the blob cached. hubcache
// has hashed the stored blob once (the warm-up read), so it sends it unhashed within
// --verify-interval, as in production; a second hubcache with --verify-interval=0 (every
// read hashed) is measured too and shown as context.
func BenchmarkWarmBlob(b *testing.B) {
	hub := fakehub.New(b)
	d := pushBlob(b, hub, "library/warm", "v1", blobSize, 1)
	dataDir := b.TempDir()
	hc := startProxy(b, hub.URL(), dataDir, nil)
	hcURL := hc.base + "/v2/docker.io/library/warm/blobs/" + d.String()
	verified(b, hcURL, d)  // the cold fill
	time.Sleep(racyWindow) // a version is trusted once it is older than this when hashed
	verified(b, hcURL, d)  // the first warm read: hashed
	strict := startProxy(b, hub.URL(), b.TempDir(), nil, "--verify-interval=0")
	strictURL := strict.base + "/v2/docker.io/library/warm/blobs/" + d.String()
	verified(b, strictURL, d)
	limitURL := serveFile(b, blobFile(b, dataDir, d)) + "/blob"
	verified(b, limitURL, d)
	var peerURL string
	if peerBinary() {
		peerURL = peer.Start(b, peer.Config{Upstream: hub.URL()}) + "/v2/library/warm/blobs/" + d.String()
		verified(b, peerURL, d)
	}

	for b.Loop() {
		for _, c := range []struct {
			id, who string
			clients int
		}{{"01-warm-blob-1", "1 client", 1}, {"02-warm-blob-16", "16 concurrent clients", 16}} {
			var limit, hcs, strictHCs, peers table.Samples
			measure := func(url string) float64 {
				wall, err := parallel(c.clients, url, blobSize)
				if err != nil {
					b.Fatal(err)
				}
				return mbps(int64(c.clients)*blobSize, wall)
			}
			for range runs {
				limit = append(limit, measure(limitURL))
				hcs = append(hcs, measure(hcURL))
				strictHCs = append(strictHCs, measure(strictURL))
				if peerURL != "" {
					peers = append(peers, measure(peerURL))
				}
			}
			recordWarm(b, c.id, "warm blob serve, 256 MiB, "+c.who+", files",
				"http.ServeFile of the same file (the limit); distribution v3 (files)", hcs, limit, peers,
				fmt.Sprintf("; hubcache hashing every read (--verify-interval=0) %.0f (%.2f× the limit)",
					strictHCs.Median(), table.Ratios(strictHCs, limit).Median()))
		}
	}
}

// recordWarm records a warm-serve row: hubcache's throughput as a ratio of the limit's and of
// distribution's (paired runs).
func recordWarm(b *testing.B, id, measured, compared string, hcs, limit, peers table.Samples, context string) {
	b.Helper()
	toLimit := table.Ratios(hcs, limit)
	row := table.Row{
		ID:       id,
		Measured: measured,
		Compared: compared,
		Result:   fmt.Sprintf("%.2f× the limit", toLimit.Median()),
		Spread:   toLimit.Range(2),
		Runs:     len(hcs),
		Target:   "≥ 0.9× the limit, ≥ 1.0× distribution",
		Notes:    fmt.Sprintf("MB/s (medians): hubcache %.0f, limit %.0f", hcs.Median(), limit.Median()),
	}
	ok := toLimit.Median() >= 0.9
	if len(peers) > 0 {
		toPeer := table.Ratios(hcs, peers)
		row.Result += fmt.Sprintf(", %.2f× distribution", toPeer.Median())
		row.Spread += "; " + toPeer.Range(2)
		row.Notes += fmt.Sprintf(", distribution %.0f", peers.Median())
		ok = ok && toPeer.Median() >= 1.0
	} else {
		row.Notes += "; distribution not built (HUBCACHE_DISTRIBUTION unset)"
	}
	row.Notes += context
	row.Verdict = table.Check(ok)
	table.Record(b, row)
}

// serveFile serves path at /blob with http.ServeFile (sendfile on Linux) on loopback and
// returns the base URL.
func serveFile(b *testing.B, path string) string {
	b.Helper()
	l, err := net.Listen("tcp", testenv.FreeAddr(b))
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}
