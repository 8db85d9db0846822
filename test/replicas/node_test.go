package replicas

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/test/containerd"
	"github.com/hubcache/hubcache/test/fakehub"
)

// indexBlobs lists the config and layer digests of every image in idx.
func indexBlobs(t *testing.T, idx v1.ImageIndex) []v1.Hash {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, imageBlobs(t, img)...)
	}
	return out
}

func TestContainerdPullsThroughNodeAndProxyAndFallsBackWhenTheProxyIsKilled(t *testing.T) {
	d := containerd.Start(t)
	c := newCluster(t, 1)
	proxy := c.replicas[0]
	platform := []string{"linux/" + runtime.GOARCH}
	first := fakehub.RandomIndex(t, platform, 2, 1<<20, false)
	second := fakehub.RandomIndex(t, platform, 2, 1<<20, false)
	c.hub.PushIndex(t, "library/first", "v1", first)
	c.hub.PushIndex(t, "library/second", "v1", second)

	node := start(t, "node", nil, "node",
		"--proxy="+proxy.URL(),
		"--upstream=docker.io="+c.hub.URL(),
		"--proxy-timeout=5s",
		"--fallback-after=1",
		"--probe-interval=1s")
	images := d.Images(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	if _, err := images.PullImage(ctx, node.Addr+"/docker.io/library/first:v1"); err != nil {
		t.Fatalf("pull through node and proxy: %v\n%s", err, d.Log())
	}
	// The proxy cached what it served.
	for _, b := range indexBlobs(t, first) {
		if _, err := storedSoon(ctx, c, b); err != nil {
			t.Errorf("blob %s of the first image is not in the bucket: %v", b, err)
		}
	}

	proxy.Kill(t)
	if _, err := images.PullImage(ctx, node.Addr+"/docker.io/library/second:v1"); err != nil {
		t.Fatalf("pull with the proxy killed: %v\n%s", err, d.Log())
	}
	// The node fetched from upstream itself: nothing of the second image went into the cache.
	for _, b := range indexBlobs(t, second) {
		if _, err := c.store.Stat(ctx, b); !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("blob %s of the second image: Stat = %v, want not found (the proxy was dead)", b, err)
		}
	}
	if st, err := images.ImageStatus(ctx, node.Addr+"/docker.io/library/second:v1"); err != nil || st == nil {
		t.Errorf("ImageStatus of the second image = %v, %v", st, err)
	}
}
