package containerd_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hubcache/hubcache/test/containerd"
)

// The point of this helper: a CRI pull of 127.0.0.1:PORT/… reaches a plain-HTTP registry with
// no hosts.toml, no mirror and no insecure-registry setting.
func TestPullFromAPlainHTTPLoopbackRegistryNeedsNoNodeConfiguration(t *testing.T) {
	var plainRequests, tlsRequests atomic.Int64
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			tlsRequests.Add(1)
		} else {
			plainRequests.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", goruntime.GOARCH
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/docker.io/library/smoke:1"
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(parsed, img); err != nil {
		t.Fatalf("pushing the test image: %v", err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	configDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}

	d := containerd.Start(t)
	t.Logf("%s, snapshotter %s", d.Version, d.Snapshotter)
	images := d.Images(t)
	pushedRequests := plainRequests.Load()

	ctx := context.Background()
	imageRef, err := images.PullImage(ctx, ref)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, d.Log())
	}
	if imageRef != configDigest.String() {
		t.Errorf("PullImage answered %s, want the config digest %s", imageRef, configDigest)
	}
	status, err := images.ImageStatus(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	wantRepoDigest := host + "/docker.io/library/smoke@" + digest.String()
	if status == nil || !slices.Contains(status.GetRepoDigests(), wantRepoDigest) {
		t.Errorf("ImageStatus = %v, want repo digest %s", status, wantRepoDigest)
	}
	if plainRequests.Load() == pushedRequests {
		t.Error("the registry saw no plain-HTTP request from containerd")
	}
	if tlsRequests.Load() != 0 {
		t.Errorf("the registry saw %d TLS requests", tlsRequests.Load())
	}
}
