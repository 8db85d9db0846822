// Package kubelet runs a real kubelet for a test, registered as a node of the test's API
// server, with its own containerd (test/containerd, ForKubelet) and a pause image built on the
// spot. Pods reach it by spec.nodeName (no scheduler) and use the host network (no CNI: the
// node stays NotReady, hostNetwork pods run anyway).
//
// Everything the kubelet lets us choose lives under the test's folders: root dir, pod logs,
// volume plugins, its configuration, containerd's root, state and runc root. What it does not
// let us choose is restored when the test ends: the device-plugin socket under
// /var/lib/kubelet/device-plugins (one kubelet per machine at a time), the symlinks in
// /var/log/containers, containerd's shim sockets in /run/containerd/s, and the kernel settings
// the kubelet changes (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops).
package kubelet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/hubcache/hubcache/test/containerd"
	"github.com/hubcache/hubcache/test/testenv"
)

const (
	// registerTimeout bounds the wait for the Node object (about a second on an idle machine).
	registerTimeout = 2 * time.Minute
	stopTimeout     = 20 * time.Second
	// deviceSocket is the kubelet's device-plugin socket, at a path no flag changes.
	deviceSocket = "/var/lib/kubelet/device-plugins/kubelet.sock"
)

// fixedPaths are the folders outside the test's own that the kubelet or the shims of its
// containerd create. Those that did not exist before the test are removed after it.
var fixedPaths = []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/run/containerd/s", "/run/containerd"}

// sysctls are the kernel settings the kubelet sets at start (kubelet: setupKernelTunables).
var sysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}

// Kubelet is a running kubelet.
type Kubelet struct {
	// NodeName is the name the kubelet registered (--hostname-override).
	NodeName string
	// Containerd is the kubelet's container runtime.
	Containerd *containerd.Daemon
	// Images is a CRI ImageService client of that runtime, e.g. to remove a pulled image.
	Images *containerd.Images
	// PauseImage is the sandbox image containerd runs for every pod.
	PauseImage string

	logPath string
}

// Start runs a kubelet against the API server of kubeconfig (an admin, system:masters
// identity), registered as nodeName, and waits until its Node object exists. The kubelet,
// its containerd and every pod they run are stopped when the test ends. It fails in CI when
// root, containerd or the kubelet binary (HUBCACHE_KUBELET, hack/tools.sh kubelet) is missing.
// opts are added to the options of the kubelet's containerd (ForKubelet is always given).
func Start(t testing.TB, kubeconfig, nodeName string, opts ...containerd.Option) *Kubelet {
	t.Helper()
	testenv.Root(t)
	bin := testenv.Env(t, "HUBCACHE_KUBELET", `hack/tools.sh kubelet && eval "$(hack/tools.sh env)"`)
	if conn, err := net.DialTimeout("unix", deviceSocket, time.Second); err == nil {
		conn.Close()
		t.Fatalf("another kubelet runs on this machine (%s answers): one kubelet per machine at a time", deviceSocket)
	}
	// Registered first, so they run last: after the kubelet and containerd have stopped.
	restoreFixedPaths(t)
	restoreSysctls(t)

	k := &Kubelet{NodeName: nodeName}
	ref, stopRegistry := servePauseImage(t)
	k.PauseImage = ref
	k.Containerd = containerd.Start(t, append([]containerd.Option{containerd.ForKubelet(ref)}, opts...)...)
	k.Images = k.Containerd.Images(t)
	ctx, cancel := context.WithTimeout(context.Background(), registerTimeout)
	defer cancel()
	if _, err := k.Images.PullImage(ctx, ref); err != nil {
		t.Fatalf("loading the pause image into containerd: %v\n%s", err, k.Containerd.Log())
	}
	stopRegistry()

	// Short paths: the kubelet creates unix sockets under its root dir (108-byte limit).
	dir, err := os.MkdirTemp("", "kubelet-")
	if err != nil {
		t.Fatalf("kubelet folder: %v", err)
	}
	t.Cleanup(func() {
		containerd.UnmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing the kubelet folder: %v", err)
		}
	})
	k.logPath = filepath.Join(dir, "kubelet.log")
	cfgPath := filepath.Join(dir, "config.yaml")
	var cfg bytes.Buffer
	err = configTemplate.Execute(&cfg, map[string]string{
		"Port":            freePort(t),
		"HealthzPort":     freePort(t),
		"PodLogsDir":      filepath.Join(dir, "pod-logs"),
		"VolumePluginDir": filepath.Join(dir, "volume-plugins"),
		"Runtime":         "unix://" + k.Containerd.Socket,
	})
	if err != nil {
		t.Fatalf("kubelet config: %v", err)
	}
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o600); err != nil {
		t.Fatalf("kubelet config: %v", err)
	}
	logFile, err := os.Create(k.logPath)
	if err != nil {
		t.Fatalf("kubelet log: %v", err)
	}
	cmd := exec.Command(bin,
		"--config="+cfgPath,
		"--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(dir, "root"),
		// Its default is /var/lib/kubelet/pki, whatever the root dir.
		"--cert-dir="+filepath.Join(dir, "pki"),
		"--hostname-override="+nodeName,
		"--v=2")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies without running its cleanups, the kubelet dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting the kubelet: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("kubelet log (%s):\n%s", k.logPath, k.Log())
		}
	})

	if err := waitForNode(ctx, kubeconfig, nodeName, exited); err != nil {
		t.Fatalf("the kubelet did not register node %s: %v\n%s", nodeName, err, k.Log())
	}
	return k
}

// Log returns the last lines of the kubelet's log, for failure messages.
func (k *Kubelet) Log() string { return tail(k.logPath, 80) }

func waitForNode(ctx context.Context, kubeconfig, nodeName string, exited <-chan struct{}) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for {
		_, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("get node: %w", err)
		}
		select {
		case <-exited:
			return errors.New("the kubelet exited")
		case <-ctx.Done():
			return fmt.Errorf("no Node object after %s", registerTimeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// servePauseImage builds the pause image (the idle program) and serves it from an in-process
// registry on loopback, from which containerd pulls it once: it never touches the fake
// Docker Hub, so the hub's counts are the test images' only. stop shuts the registry down.
func servePauseImage(t testing.TB) (ref string, stop func()) {
	t.Helper()
	img := BinaryImage(t, IdleBinary(t), "pause", "pause")
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	ref = strings.TrimPrefix(srv.URL, "http://") + "/hubcache-test/pause:1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("pause image reference: %v", err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing the pause image: %v", err)
	}
	return ref, srv.Close
}

// restoreFixedPaths removes, when the test ends, the fixed paths that do not exist now.
func restoreFixedPaths(t testing.TB) {
	var created []string
	for _, p := range fixedPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			created = append(created, p)
		}
	}
	t.Cleanup(func() {
		for _, p := range created {
			if strings.HasPrefix(p, "/run/containerd") {
				// Other containerd daemons may use it by now: remove it only if empty.
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Logf("leaving %s: %v", p, err)
				}
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				t.Errorf("removing %s: %v", p, err)
			}
		}
	})
}

// restoreSysctls puts back, when the test ends, the kernel settings the kubelet changes.
func restoreSysctls(t testing.TB) {
	saved := map[string][]byte{}
	for _, s := range sysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", s))
		if err != nil {
			t.Fatalf("reading sysctl %s: %v", s, err)
		}
		saved[s] = v
	}
	t.Cleanup(func() {
		for _, s := range sysctls {
			if err := os.WriteFile(filepath.Join("/proc/sys", s), saved[s], 0o644); err != nil {
				t.Errorf("restoring sysctl %s to %s: %v", s, bytes.TrimSpace(saved[s]), err)
			}
		}
	})
}

func freePort(t testing.TB) string {
	t.Helper()
	return strconv.Itoa(testenv.FreePort(t))
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

// configTemplate is a KubeletConfiguration known to work on these machines: cgroup v1 with
// the cgroupfs driver and no QoS cgroups or allocatable enforcement, swap tolerated, only
// loopback listeners (anonymous, AlwaysAllow: nothing but the test reaches them), and image
// garbage collection off so the pause image and the test's images stay until the test
// removes them itself.
var configTemplate = template.Must(template.New("kubelet").Parse(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {{.Port}}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {{.HealthzPort}}
containerRuntimeEndpoint: {{.Runtime}}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: {{.PodLogsDir}}
volumePluginDir: {{.VolumePluginDir}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`))
