// Package procs runs hubcache, the real binary, as child processes of integration tests and
// benchmarks: each process on free loopback ports, logging to its own file, ready when its
// ops listener's /readyz answers 200, and stopped (SIGTERM, then SIGKILL) when the test ends.
package procs

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

// Build builds cmd/hubcache into dir and returns the binary's path. Plain `go build`, so the
// build cache other tests filled is reused.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "hubcache")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/hubcache/hubcache/cmd/hubcache").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building hubcache: %w\n%s", err, out)
	}
	return bin, nil
}

// readyTimeout bounds how long a process may take to answer /readyz.
const readyTimeout = 30 * time.Second

// attempts is how many times Start tries new ports: a port found free can be taken by
// another process before the child binds it.
const attempts = 3

// Proc is one hubcache process.
type Proc struct {
	Name string
	Addr string // the registry API, host:port (--listen)
	Ops  string // /healthz, /readyz, /metrics (--metrics-listen)
	Dir  string // a temporary directory of the process's own: its log, and whatever args put there
	Cmd  *exec.Cmd
	// Exited is closed once the process has exited.
	Exited <-chan struct{}

	logPath string
}

// Start runs `bin args(addr, ops, dir)` with env added to the environment, on free loopback
// ports addr (--listen) and ops (--metrics-listen), which Start adds to the command line, and
// waits until /readyz answers 200. The process stops when the test ends; its log's tail is
// printed if the test failed.
func Start(tb testing.TB, bin, name string, env []string, args func(addr, ops, dir string) []string) *Proc {
	tb.Helper()
	p := &Proc{Name: name, Dir: tb.TempDir()}
	p.logPath = filepath.Join(p.Dir, name+".log")
	var err error
	for range attempts {
		p.Addr, p.Ops = testenv.FreeAddr(tb), testenv.FreeAddr(tb)
		full := append(args(p.Addr, p.Ops, p.Dir), "--listen="+p.Addr, "--metrics-listen="+p.Ops)
		if err = p.start(bin, full, env); err != nil {
			tb.Fatalf("starting %s: %v", name, err)
		}
		if err = p.waitReady(); err == nil {
			break
		}
		p.Kill()
	}
	if err != nil {
		tb.Fatalf("%s did not become ready: %v\n%s", name, err, p.Log(40))
	}
	tb.Cleanup(func() {
		p.Stop(10 * time.Second)
		if tb.Failed() {
			tb.Logf("log of %s:\n%s", name, p.Log(40))
		}
	})
	return p
}

func (p *Proc) start(bin string, args, env []string) error {
	logf, err := os.Create(p.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(exited)
	}()
	p.Cmd, p.Exited = cmd, exited
	return nil
}

func (p *Proc) waitReady() error {
	var last error
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.Exited:
			return fmt.Errorf("exited")
		default:
		}
		resp, err := http.Get("http://" + p.Ops + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readyz answered %d", resp.StatusCode)
		}
		last = err
	}
	return fmt.Errorf("not ready after %s: %v", readyTimeout, last)
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.Exited
}

// Stop sends SIGTERM and waits for the process to exit, with SIGKILL after grace. Stopping a
// process that has exited does nothing.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.Exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Exited:
	case <-time.After(grace):
		p.Kill()
	}
}

// Log returns the last n lines of the process's log.
func (p *Proc) Log(n int) string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
