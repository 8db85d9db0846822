// Package containerd starts a private containerd for a test and drives its CRI ImageService,
// the very call the kubelet makes to pull an image; with ForKubelet it also runs the pods of a
// real kubelet (test/kubelet). The daemon gets its own root, state and socket in temporary
// folders, so it never touches a containerd the machine may run.
//
// Its configuration deliberately has no registry section besides an empty config_path: no
// hosts.toml, no mirrors, no insecure-registry list. A pull of 127.0.0.1:PORT/… therefore
// succeeds over plain HTTP only because containerd treats loopback hosts as plain-HTTP
// registries by default, which is what hubcache's rewrite relies on.
package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubcache/hubcache/test/testenv"
)

// Snapshotter names the snapshotter a Daemon unpacks layers into.
const (
	Overlayfs = "overlayfs"
	Native    = "native"
)

const startTimeout = 30 * time.Second

// Daemon is a running private containerd.
type Daemon struct {
	// Socket is the gRPC unix socket the CRI services listen on.
	Socket string
	// Root is containerd's persistent folder (content store, snapshots).
	Root string
	// Snapshotter is the snapshotter the CRI plugin unpacks into: overlayfs when the kernel
	// mounts overlay here, native otherwise.
	Snapshotter string
	// Config is the configuration file the daemon was started with.
	Config string
	// Version is the output of `containerd --version`.
	Version string

	logPath string
}

// Option configures a Daemon.
type Option func(*config)

type config struct {
	sandboxImage string
	env          []string
}

// ForKubelet makes the daemon able to run pods for a real kubelet, with sandboxImage (already
// pullable, or pulled by the caller right after Start) as the pause image. It adds what these
// machines need to run containers: no AppArmor profile, oom_score_adj restricted to what the
// daemon may set (without CAP_SYS_RESOURCE every sandbox fails otherwise, with "can't get final
// child's PID from pipe: EOF"), and runc's state under the daemon's own folder. Still no
// registry or mirror setting. When the test ends every pod sandbox is stopped and removed
// before the daemon stops, so no container outlives the test.
func ForKubelet(sandboxImage string) Option {
	return func(c *config) { c.sandboxImage = sandboxImage }
}

// WithEnv adds environment variables (KEY=VALUE) to the daemon's, e.g. HTTPS_PROXY and
// SSL_CERT_FILE to reach a registry under its public name the way a node behind an egress
// proxy does. It adds no registry setting: the configuration stays as described above.
func WithEnv(env ...string) Option {
	return func(c *config) { c.env = append(c.env, env...) }
}

// Start runs a private containerd as root and stops it (and unmounts what it left mounted)
// when the test ends. It fails in CI when root or the containerd binary is missing.
func Start(t testing.TB, opts ...Option) *Daemon {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	testenv.Root(t)
	bin := testenv.Binary(t, "containerd", "apt-get install containerd (or hack/tools.sh apt)")

	version, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("containerd --version: %v", err)
	}
	if !strings.Contains(string(version), " 1.") {
		// The configuration below is format version 2 with the CRI plugin named
		// io.containerd.grpc.v1.cri, as containerd 1.x reads it; 2.x renamed the plugins.
		t.Fatalf("this helper writes a containerd 1.x configuration; found %s", version)
	}

	dir := t.TempDir()
	// A unix socket path is limited to 108 bytes and t.TempDir() paths can be long.
	sockDir, err := os.MkdirTemp("", "ctrd")
	if err != nil {
		t.Fatalf("socket folder: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	d := &Daemon{
		Socket:      filepath.Join(sockDir, "c.sock"),
		Root:        filepath.Join(dir, "root"),
		Snapshotter: pickSnapshotter(t, dir),
		Config:      filepath.Join(dir, "config.toml"),
		Version:     strings.TrimSpace(string(version)),
		logPath:     filepath.Join(dir, "containerd.log"),
	}
	var cfg bytes.Buffer
	state := filepath.Join(dir, "state")
	err = configTemplate.Execute(&cfg, map[string]string{
		"Root":         d.Root,
		"State":        state,
		"SandboxImage": c.sandboxImage,
		"RuncRoot":     filepath.Join(state, "runc"),
		"Socket":       d.Socket,
		"TTRPC":        filepath.Join(sockDir, "t.sock"),
		"Snapshotter":  d.Snapshotter,
		"CNIBin":       filepath.Join(dir, "cni", "bin"),
		"CNIConf":      filepath.Join(dir, "cni", "conf"),
	})
	if err != nil {
		t.Fatalf("containerd config: %v", err)
	}
	if err := os.WriteFile(d.Config, cfg.Bytes(), 0o600); err != nil {
		t.Fatalf("containerd config: %v", err)
	}

	logFile, err := os.Create(d.logPath)
	if err != nil {
		t.Fatalf("containerd log: %v", err)
	}
	cmd := exec.Command(bin, "--config", d.Config)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// If the test binary dies without running its cleanups, the daemon dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting containerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	t.Cleanup(func() {
		if c.sandboxImage != "" {
			if err := d.removePods(); err != nil {
				t.Errorf("removing the pods left in containerd: %v", err)
			}
		}
		stop(cmd, exited)
		logFile.Close()
		UnmountUnder(t, dir)
		if t.Failed() {
			t.Logf("containerd log (%s):\n%s", d.logPath, tail(d.logPath, 60))
		}
	})

	if err := waitForSocket(d.Socket, exited); err != nil {
		t.Fatalf("containerd did not start: %v\n%s", err, tail(d.logPath, 60))
	}
	return d
}

// Log returns the last lines of the daemon's log, for failure messages.
func (d *Daemon) Log() string { return tail(d.logPath, 60) }

func stop(cmd *exec.Cmd, exited <-chan error) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	<-exited
}

// waitForSocket waits until the socket accepts a connection: its file appears when it is
// bound, a moment before it listens, and a dial in between is refused.
func waitForSocket(path string, exited <-chan error) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("containerd exited: %v", err)
		default:
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no socket accepting at %s after %s: %v", path, startTimeout, last)
}

// pickSnapshotter mounts a tiny overlay to see whether the kernel and the filesystem under the
// temporary folder support it; containerd's overlayfs snapshotter silently stays unloaded when
// they do not, so the CRI plugin would fail every pull.
func pickSnapshotter(t testing.TB, dir string) string {
	t.Helper()
	probe := filepath.Join(dir, "overlay-probe")
	var dirs []string
	for _, name := range []string{"lower", "upper", "work", "merged"} {
		p := filepath.Join(probe, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatalf("overlay probe: %v", err)
		}
		dirs = append(dirs, p)
	}
	defer os.RemoveAll(probe)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", dirs[0], dirs[1], dirs[2])
	if err := unix.Mount("overlay", dirs[3], "overlay", 0, opts); err != nil {
		t.Logf("overlay mount failed (%v): using the native snapshotter", err)
		return Native
	}
	if err := unix.Unmount(dirs[3], 0); err != nil {
		t.Fatalf("overlay probe unmount: %v", err)
	}
	return Overlayfs
}

// UnmountUnder unmounts every mount point below dir, deepest first, so t.TempDir can be
// removed even when containerd (or a kubelet) was killed in the middle of its work.
func UnmountUnder(t testing.TB, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Logf("reading mountinfo: %v", err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		// mountinfo escapes spaces and the like as octal; our paths have none.
		if p := fields[4]; p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			t.Logf("unmount %s: %v", points[i], err)
		}
	}
}

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// configTemplate is a containerd 1.x (format version 2) configuration that keeps the daemon
// to itself: private paths, no debug or metrics listener, the CRI streaming server on a random
// loopback port, and no CNI configuration (pulling images needs none; the CRI plugin only
// logs that pod networking is not ready).
var configTemplate = template.Must(template.New("config").Parse(`version = 2
root = "{{.Root}}"
state = "{{.State}}"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{{.Socket}}"

[ttrpc]
  address = "{{.TTRPC}}"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
{{- if .SandboxImage}}
  # Running pods for a kubelet (ForKubelet).
  sandbox_image = "{{.SandboxImage}}"
  disable_apparmor = true
  restrict_oom_score_adj = true
{{- end}}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{{.Snapshotter}}"
{{- if .SandboxImage}}
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{{.RuncRoot}}"
        SystemdCgroup = false
{{- end}}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBin}}"
    conf_dir = "{{.CNIConf}}"
  # No hosts.toml folder, no mirrors, no per-registry TLS settings: loopback is plain HTTP
  # by containerd's own default.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
`))

// ctxTimeout is the time one CRI call may take; pulls of the test images take seconds.
const ctxTimeout = 2 * time.Minute

func callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, ctxTimeout)
}
