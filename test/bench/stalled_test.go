package bench

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/test/fakehub"
)

const (
	stalledBlobReaders     = 1000
	stalledManifestReaders = 100
	stalledBlobSize        = 64 << 20
	bigManifestSize        = 3_500_000
	stalledRuns            = 3
	// stalledLimitMiB is the row's target.
	stalledLimitMiB = 256
)

// BenchmarkStalledReaders (row 10) runs the hubcache binary (so that its RSS is its own) in
// front of the fake hub, opens 1000 connections that GET a cached 64 MiB blob and 100 that GET
// a cached ~3.5 MiB manifest, none of which read a byte, then has an ordinary client pull the
// manifest. It records the proxy's peak RSS (VmHWM) and whether the ordinary client was
// served. Each run starts a fresh process on the same data, so each peak is its own.
func BenchmarkStalledReaders(b *testing.B) {
	hub := fakehub.New(b)
	layer := pushBlob(b, hub, "library/bench", "stalled", stalledBlobSize, 10)
	img := fakehub.RandomImage(b, 1, 1000, false)
	img = mutate.Annotations(img, map[string]string{"pad": strings.Repeat("x", bigManifestSize)}).(v1.Image)
	hub.Push(b, "library/big", "v1", img)
	md, err := img.Digest()
	if err != nil {
		b.Fatal(err)
	}
	blobPath := "/v2/docker.io/library/bench/blobs/" + layer.String()
	manifestPath := "/v2/docker.io/library/big/manifests/" + md.String()
	dataDir := b.TempDir()
	env := []string{"GOMEMLIMIT=512MiB"} // as manifests/base sets it from the pod's limit

	for b.Loop() {
		var rss, served table.Samples
		for i := range stalledRuns {
			p := startProxy(b, hub.URL(), dataDir, env)
			if i == 0 { // warm both; later runs find them cached
				verified(b, p.base+blobPath, layer)
			}
			if code := getCode(p.base + manifestPath); code != http.StatusOK {
				b.Fatalf("warming the manifest: %d", code)
			}
			var conns []net.Conn
			open := func(path string, n int) {
				for range n {
					c, err := net.Dial("tcp", p.addr)
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
			ok := 0.0
			if getCode(p.base+manifestPath) == http.StatusOK {
				ok = 1
			}
			rss = append(rss, peakRSS(b, p.cmd.Process.Pid))
			served = append(served, ok)
			for _, c := range conns {
				_ = c.Close()
			}
			p.stop()
		}
		n := 0
		for _, s := range served {
			n += int(s)
		}
		table.Record(b, table.Row{
			ID:       "10-stalled-readers",
			Measured: "memory under stalled readers: 1000 GETs of a cached 64 MiB blob and 100 of a ~3.5 MiB manifest that read nothing, then one ordinary client",
			Compared: "the target (absolute)",
			Result:   fmt.Sprintf("peak RSS %.0f MiB; ordinary client served in %d of %d runs", rss.Median(), n, len(served)),
			Spread:   rss.Range(0) + " MiB",
			Runs:     len(rss),
			Target:   fmt.Sprintf("≤ %d MiB, ordinary client served", stalledLimitMiB),
			Verdict:  table.Check(rss.Max() <= stalledLimitMiB && n == len(served)),
			Notes:    "hubcache proxy binary, GOMEMLIMIT=512MiB as in manifests/base; VmHWM of a fresh process per run",
		})
	}
}
