package pulls

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/pgtest"
)

// BenchmarkManifestPath serves warm manifests from a proxy in this process, so that
// -cpuprofile and -memprofile see the whole manifest path (registry handler, visibility,
// cache, metadata) in one profile; it records no row. Sub-benchmarks: SQLite and Postgres,
// by digest and by tag; b.N requests from 32 clients, with allocations reported.
func BenchmarkManifestPath(b *testing.B) {
	for _, store := range []string{"sqlite", "postgres"} {
		for _, by := range []string{"digest", "tag"} {
			b.Run(store+"/"+by, func(b *testing.B) {
				var opts []server.Option
				if store == "postgres" {
					dsn, _ := pgtest.Schema(b, "hubcache_bench_")
					opts = append(opts, server.WithMetadataURL(dsn))
				}
				urls := inProcessProxy(b, opts...)
				if by == "tag" {
					urls = urls[:len(urls)/2]
				} else {
					urls = urls[len(urls)/2:]
				}
				hc := newHTTPClient(manifestClients)
				if _, err := load(b.Context(), hc, urls, 1, 0); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				n := b.N
				perClient := (n + manifestClients - 1) / manifestClients
				all := make([]string, 0, perClient*manifestClients)
				for i := range perClient * manifestClients {
					all = append(all, urls[i%len(urls)])
				}
				if _, err := load(b.Context(), hc, all, manifestClients, 0); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// inProcessProxy runs a proxy in front of a fake hub with manifestRepos warm images and
// returns their URLs by tag, then by digest. The request log is written as the binary writes
// it (JSON at info), to /dev/null.
func inProcessProxy(b *testing.B, opts ...server.Option) []string {
	b.Helper()
	hub := fakehub.New(b)
	u, _ := url.Parse(hub.URL())
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { devnull.Close() })
	srv, err := server.New(context.Background(), b.TempDir(), map[string]*url.URL{"docker.io": u},
		append([]server.Option{
			server.WithDockerConfigDir(b.TempDir()),
			server.WithLogger(slog.New(slog.NewJSONHandler(io.Writer(devnull), nil))),
		}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(hs.Close)
	var tags, digests []string
	for i := range manifestRepos {
		d := hub.Push(b, repoName(i), "latest", fakehub.RandomImage(b, 2, 1<<10, false))
		tags = append(tags, hs.URL+"/v2/docker.io/"+repoName(i)+"/manifests/latest")
		digests = append(digests, hs.URL+"/v2/docker.io/"+repoName(i)+"/manifests/"+d.String())
	}
	hc := &http.Client{}
	for _, u := range append(tags, digests...) {
		if err := get(b.Context(), hc, u); err != nil {
			b.Fatal(err)
		}
	}
	return append(tags, digests...)
}
