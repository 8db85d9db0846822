package system

import (
	"errors"
	"fmt"
	"io"
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

// buildHubcache builds the hubcache binary once. Plain `go build`, as the other tests that run
// the binary do, so the build cache they filled is reused (with -trimpath or CGO_ENABLED=0
// every package is compiled again: many minutes on a busy machine).
func buildHubcache(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "hubcache")
	cmd := exec.Command("go", "build", "-o", out, "github.com/hubcache/hubcache/cmd/hubcache")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building hubcache: %v\n%s", err, b)
	}
	return out
}

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	return testenv.FreeAddr(t)
}

// process is one hubcache process (proxy, node, webhook) started by the test.
type process struct {
	name    string
	bin     string
	args    []string
	env     []string
	ready   string // URL answering 200 once the process serves
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProcess runs `bin args…` with env added, waits until ready answers 200, and stops the
// process when the test ends. Its log is printed if the test fails.
func startProcess(t *testing.T, name, bin, ready string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: name, bin: bin, args: args, env: env, ready: ready,
		logPath: filepath.Join(t.TempDir(), name+".log")}
	if err := p.start(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, p.log())
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("log of %s (%s):\n%s", name, p.logPath, p.log())
		}
	})
	return p
}

func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return waitHTTP(p.ready, 60*time.Second, exited)
}

// stop sends SIGTERM and waits for the process to exit (SIGKILL after 15 s). Stopping a
// stopped process does nothing.
func (p *process) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd, p.exited = nil, nil
}

func (p *process) log() string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers 200, the process exits, or timeout passes.
func waitHTTP(url string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited")
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %d", url, resp.StatusCode)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %v", timeout, last)
}
