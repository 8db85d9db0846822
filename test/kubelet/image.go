package kubelet

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// IdleBinary builds test/kubelet/idle (a static program that waits for SIGTERM) into the
// test's temporary folder and returns its path. It is what the pause image and the runnable
// test images execute.
func IdleBinary(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "idle")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "github.com/hubcache/hubcache/test/kubelet/idle")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the idle program: %v\n%s", err, b)
	}
	return out
}

// BinaryImage returns a runnable single-layer image for this machine's platform
// (linux/GOARCH): the executable binary at /NAME as its entry point, and a file /image-id
// holding id, so images built from the same binary still have different layers and digests.
// Images that run need a real executable, not filler layers.
func BinaryImage(t testing.TB, binary, name, id string) v1.Image {
	t.Helper()
	exe, err := os.ReadFile(binary)
	if err != nil {
		t.Fatalf("image %s: %v", name, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A fixed time keeps the layer's digest a function of its content only.
	mtime := time.Unix(0, 0)
	for _, f := range []struct {
		path string
		mode int64
		data []byte
	}{
		{name, 0o755, exe},
		{"image-id", 0o644, []byte(id + "\n")},
	} {
		hdr := &tar.Header{Name: f.path, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("image %s: %v", name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatalf("image %s: %v", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("image %s: %v", name, err)
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		t.Fatalf("image %s: layer: %v", name, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatalf("image %s: %v", name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("image %s: config: %v", name, err)
	}
	cf = cf.DeepCopy()
	// Without a platform in the config containerd finds no image to run for this machine.
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/" + name}
	cf.Config.Labels = map[string]string{"io.hubcache.test.image-id": id}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("image %s: config: %v", name, err)
	}
	return img
}
