// Package replicas runs several hubcache proxy processes — the real binary — sharing one
// bucket (MinIO) and one Postgres schema in front of the fake Docker Hub, and checks what
// many replicas promise: one upstream fetch per blob, nothing partial in the bucket when a
// replica dies mid-fill, and the node's fallback when the proxy is gone.
package replicas

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubcache/hubcache/test/procs"
	"github.com/hubcache/hubcache/test/testenv"
)

// binary is the hubcache binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hubcache-replicas-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = procs.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	return testenv.FreeAddr(t)
}

// process is one hubcache process started by a test.
type process struct {
	*procs.Proc
	scheme  string // of the registry API: "https" with --tls-cert-file
	dataDir string // a proxy's --data-dir (spool, and on embedded storage blobs and metadata)
}

// URL is the process's registry base URL.
func (p *process) URL() string { return p.scheme + "://" + p.Addr }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *process) Kill(t *testing.T) {
	t.Helper()
	p.Proc.Kill()
}

func (p *process) log() string { return p.Log(40) }

// start runs `hubcache args…` with env added, waits until its ops listener answers ready, and
// stops it when the test ends (SIGTERM, then SIGKILL). A proxy gets its own --data-dir and
// advertises its registry address.
func start(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	p := &process{scheme: "http"}
	for _, a := range args {
		if strings.HasPrefix(a, "--tls-cert-file=") {
			p.scheme = "https"
		}
	}
	p.Proc = procs.Start(t, binary, name, env, func(addr, _, dir string) []string {
		full := append([]string{}, args...)
		if args[0] == "proxy" {
			p.dataDir = filepath.Join(dir, "data")
			full = append(full, "--data-dir="+p.dataDir, "--advertise-addr="+addr)
		}
		return full
	})
	return p
}
