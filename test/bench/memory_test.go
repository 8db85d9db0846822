package bench

import (
	"fmt"
	"testing"

	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/test/fakehub"
)

const (
	// memoryStreams is the 64 concurrent streams.
	memoryStreams = 64
	// memoryBlobSize is scaled down from the 1 GiB: a stream's memory does not grow
	// with the blob (both processes copy through fixed buffers), and 64 × 1 GiB through two
	// processes would take minutes on 2 cores.
	memoryBlobSize = 256 << 20
	memoryRuns     = 3
	memoryLimitMiB = 150
)

// BenchmarkMemory (rows 08 and 09) runs the hubcache proxy and node binaries as separate
// processes, with GOMEMLIMIT as manifests/base sets it, and has 64 clients stream a cached
// blob through the node at once: the node relays every stream from the proxy, so both carry
// 64 streams. Each run starts fresh processes (on the same cached data), so each peak RSS
// (VmHWM) is its own.
func BenchmarkMemory(b *testing.B) {
	hub := fakehub.New(b)
	d := pushBlob(b, hub, "library/mem", "v1", memoryBlobSize, 8)
	dataDir := b.TempDir()
	path := "/v2/docker.io/library/mem/blobs/" + d.String()

	for b.Loop() {
		var proxyRSS, nodeRSS, rate table.Samples
		for i := range memoryRuns {
			proxy := startProxy(b, hub.URL(), dataDir, []string{"GOMEMLIMIT=512MiB"})
			if i == 0 {
				verified(b, proxy.base+path, d) // the cold fill, outside the measured streams
				proxy.stop()
				proxy = startProxy(b, hub.URL(), dataDir, []string{"GOMEMLIMIT=512MiB"})
			}
			node := startHubcache(b, []string{"GOMEMLIMIT=128MiB"}, "node", "--proxy", proxy.base,
				"--upstream", "docker.io="+hub.URL())
			wall, err := parallel(memoryStreams, node.base+path, memoryBlobSize)
			if err != nil {
				b.Fatal(err)
			}
			proxyRSS = append(proxyRSS, peakRSS(b, proxy.cmd.Process.Pid))
			nodeRSS = append(nodeRSS, peakRSS(b, node.cmd.Process.Pid))
			rate = append(rate, mbps(memoryStreams*memoryBlobSize, wall))
			node.stop()
			proxy.stop()
		}
		for _, r := range []struct {
			id, what, env string
			rss           table.Samples
		}{
			{"08-memory-proxy", "proxy", "GOMEMLIMIT=512MiB", proxyRSS},
			{"09-memory-node", "node entry point", "GOMEMLIMIT=128MiB", nodeRSS},
		} {
			table.Record(b, table.Row{
				ID:       r.id,
				Measured: fmt.Sprintf("memory: 64 concurrent streams of a cached 256 MiB blob (scaled from 1 GiB), client → node → proxy; peak RSS of the %s", r.what),
				Compared: "the target (absolute)",
				Result:   fmt.Sprintf("peak RSS %.0f MiB", r.rss.Median()),
				Spread:   r.rss.Range(0) + " MiB",
				Runs:     len(r.rss),
				Target:   fmt.Sprintf("≤ %d MiB", memoryLimitMiB),
				Verdict:  table.Check(r.rss.Max() <= memoryLimitMiB),
				Notes:    fmt.Sprintf("VmHWM of a fresh process per run, %s as in manifests/base; %.0f MB/s in all (median)", r.env, rate.Median()),
			})
		}
	}
}
