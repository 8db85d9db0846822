// Package pulls benchmarks what a cluster's image pulls cost: warm manifest requests per
// second (hubcache on SQLite and on Postgres against distribution v3 in proxy mode), a cold
// stampede over three replicas (upstream GETs per blob and wall time, against three
// distribution replicas on one bucket), and the Docker Hub pulls a simulated fleet makes with
// and without hubcache. Each benchmark records one row of docs/bench.md (test/bench/table);
// nothing here asserts a time. Run with `make bench`.
package pulls

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hubcache/hubcache/test/procs"
)

// hubcacheBinary builds cmd/hubcache once per test process: the rows that compare processes
// run the real binary, as distribution runs its own.
var hubcacheBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "hubcache-bench-")
	if err != nil {
		return "", err
	}
	return procs.Build(dir)
})

// proc is one hubcache proxy process.
type proc struct{ *procs.Proc }

// URL is the registry API's base URL.
func (p proc) URL() string { return "http://" + p.Addr }

// startProxy runs `hubcache proxy` with args and env added, waits for /readyz and stops it
// when the benchmark ends. The log goes to a file at the default level (info, one line per
// request), as an operator runs it.
func startProxy(tb testing.TB, name string, env []string, args ...string) proc {
	tb.Helper()
	bin, err := hubcacheBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return proc{procs.Start(tb, bin, name, env, func(addr, _, dir string) []string {
		return append([]string{"proxy",
			"--data-dir=" + filepath.Join(dir, "data"), "--advertise-addr=" + addr,
			"--docker-config=" + dir,
		}, args...)
	})}
}
