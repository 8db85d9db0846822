// Package pulls benchmarks what a cluster's image pulls cost: warm manifest requests per
// second (hubcache on SQLite and on Postgres against distribution v3 in proxy mode), a cold
// stampede over three replicas (upstream GETs per blob and wall time, against three
// distribution replicas on one bucket), and the Docker Hub pulls a simulated fleet makes with
// and without hubcache. Each benchmark records one row of docs/bench.md (test/bench/table);
// nothing here asserts a time. Run with `make bench`.
package pulls

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubcache/hubcache/test/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// hubcacheBinary builds cmd/hubcache once per test process: the rows that compare processes
// run the real binary, as distribution runs its own.
func hubcacheBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hubcache-bench-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hubcache")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/hubcache/hubcache/cmd/hubcache")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building hubcache: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// proc is one hubcache proxy process.
type proc struct {
	name    string
	addr    string // registry API host:port
	ops     string // /metrics, /readyz
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// URL is the registry API's base URL.
func (p *proc) URL() string { return "http://" + p.addr }

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// startProxy runs `hubcache proxy` with args and env added, waits for /readyz and stops it
// when the benchmark ends. The log goes to a file at the default level (info, one line per
// request), as an operator runs it.
func startProxy(tb testing.TB, name string, env []string, args ...string) *proc {
	tb.Helper()
	bin := hubcacheBinary(tb)
	dir := tb.TempDir()
	p := &proc{name: name, logPath: filepath.Join(dir, name+".log")}
	var err error
	for range 3 {
		p.addr, p.ops = testenv.FreeAddr(tb), testenv.FreeAddr(tb)
		full := append([]string{"proxy",
			"--listen=" + p.addr, "--metrics-listen=" + p.ops,
			"--data-dir=" + filepath.Join(dir, "data"), "--advertise-addr=" + p.addr,
			"--docker-config=" + dir,
		}, args...)
		logf, ferr := os.Create(p.logPath)
		if ferr != nil {
			tb.Fatal(ferr)
		}
		p.cmd = exec.Command(bin, full...)
		p.cmd.Env = append(os.Environ(), env...)
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		if err = p.cmd.Start(); err != nil {
			tb.Fatalf("starting %s: %v", name, err)
		}
		p.exited = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) {
			_ = cmd.Wait()
			_ = logf.Close()
			close(done)
		}(p.cmd, p.exited)
		if err = waitReady(p); err == nil {
			break
		}
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	if err != nil {
		tb.Fatalf("%s did not become ready: %v\n%s", name, err, p.logTail())
	}
	tb.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func waitReady(p *proc) error {
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.exited:
			return fmt.Errorf("exited")
		default:
		}
		resp, err := http.Get("http://" + p.ops + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz answered %d", resp.StatusCode)
		}
		last = err
	}
	return fmt.Errorf("not ready after 30s: %v", last)
}
