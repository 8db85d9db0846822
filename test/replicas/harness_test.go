// Package replicas runs several hubcache proxy processes — the real binary — sharing one
// bucket (MinIO) and one Postgres schema in front of the fake Docker Hub, and checks what
// many replicas promise: one upstream fetch per blob, nothing partial in the bucket when a
// replica dies mid-fill, and the node's fallback when the proxy is gone.
package replicas

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	binary = filepath.Join(dir, "hubcache")
	build := exec.Command("go", "build", "-o", binary, "github.com/hubcache/hubcache/cmd/hubcache")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hubcache:", err)
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
	name    string
	scheme  string // of the registry API: "https" with --tls-cert-file
	addr    string // registry API, host:port
	ops     string // /healthz, /readyz, /metrics
	dataDir string // a proxy's --data-dir (spool, and on embedded storage blobs and metadata)
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// URL is the process's registry base URL.
func (p *process) URL() string { return p.scheme + "://" + p.addr }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *process) Kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *process) log() string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// start runs `hubcache args…` with env added, waits until its ops listener answers ready, and
// stops it when the test ends (SIGTERM, then SIGKILL).
func start(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	dir := t.TempDir()
	p := &process{name: name, scheme: "http", logPath: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	for _, a := range args {
		if strings.HasPrefix(a, "--tls-cert-file=") {
			p.scheme = "https"
		}
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		p.addr, p.ops = freePort(t), freePort(t)
		full := append([]string{}, args...)
		full = append(full, "--listen="+p.addr, "--metrics-listen="+p.ops)
		if args[0] == "proxy" {
			p.dataDir = filepath.Join(dir, "data")
			full = append(full, "--data-dir="+p.dataDir, "--advertise-addr="+p.addr)
		}
		logf, ferr := os.Create(p.logPath)
		if ferr != nil {
			t.Fatal(ferr)
		}
		p.cmd = exec.Command(binary, full...)
		p.cmd.Env = append(os.Environ(), env...)
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		if err = p.cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", name, err)
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
		t.Fatalf("%s did not become ready: %v\n%s", name, err, p.log())
	}
	t.Cleanup(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, p.log())
		}
	})
	return p
}

func waitReady(p *process) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
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
			err = fmt.Errorf("readyz %d", resp.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 30s: %v", last)
}
