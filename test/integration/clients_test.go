package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/test/containerd"
)

// Each client pulls every kind of image twice through a fresh proxy: the first pull fills the
// cache and must reproduce upstream's digests byte for byte; the second, by a client with an
// empty local store, must be served without any upstream GET.

func TestCranePullsThroughTheProxy(t *testing.T) {
	bin := crane(t)
	for _, kind := range imageKinds {
		t.Run(kind.name, func(t *testing.T) {
			e := newEnv(t)
			fx := pushFixture(t, e.hub, "library/crane", "1.0", kind)
			ref := e.proxy.Ref(fx.repo, fx.tag)

			if got := strings.TrimSpace(mustRun(t, bin, "digest", ref)); got != fx.digest.String() {
				t.Errorf("crane digest = %s, want upstream's %s", got, fx.digest)
			}
			if got := mustRun(t, bin, "manifest", ref); got != string(fx.manifest) {
				t.Errorf("crane manifest differs from upstream's bytes:\n%s\nwant\n%s", got, fx.manifest)
			}
			dir := t.TempDir()
			mustRun(t, bin, "pull", "--format=oci", ref, dir)
			checkOCILayout(t, dir, fx)

			e.hub.Reset()
			e.proxy.ResetSeen()
			for _, again := range []string{ref, e.proxy.DigestRef(fx.repo, fx.digest)} {
				dir := t.TempDir()
				mustRun(t, bin, "pull", "--format=oci", again, dir)
				checkOCILayout(t, dir, fx)
			}
			requireNoUpstreamGET(t, e.hub)
			if e.proxy.Seen("GET", "blobs") == 0 {
				t.Error("the second pulls fetched no blob from the proxy; the test proves nothing")
			}
		})
	}
}

// checkOCILayout checks that an OCI layout written by crane names upstream's digest and that
// every blob in it matches its name.
func checkOCILayout(t *testing.T, dir string, fx fixture) {
	t.Helper()
	var index struct {
		Manifests []struct{ Digest string }
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatalf("OCI layout: %v", err)
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatalf("OCI layout index.json: %v", err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Digest != fx.digest.String() {
		t.Errorf("OCI layout index.json = %s, want one manifest %s", data, fx.digest)
	}
	checkBlobFiles(t, filepath.Join(dir, "blobs", "sha256"), []v1.Hash{fx.digest, fx.nativeConfig}, func(name string) string { return name })
}

// checkBlobFiles checks every file named by a sha256 hex digest (after rename) in dir, and
// that each of required is among them.
func checkBlobFiles(t *testing.T, dir string, required []v1.Hash, rename func(string) string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	hexName := regexp.MustCompile(`^[0-9a-f]{64}$`)
	var found []string
	for _, e := range entries {
		name := rename(e.Name())
		if !hexName.MatchString(name) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256Hex(data); got != name {
			t.Errorf("%s holds bytes with digest sha256:%s", e.Name(), got)
		}
		found = append(found, "sha256:"+name)
	}
	for _, d := range required {
		if !slices.Contains(found, d.String()) {
			t.Errorf("%s is missing %s (found %v)", dir, d, found)
		}
	}
}

func TestSkopeoCopiesThroughTheProxy(t *testing.T) {
	bin := skopeo(t)
	for _, kind := range imageKinds {
		t.Run(kind.name, func(t *testing.T) {
			e := newEnv(t)
			fx := pushFixture(t, e.hub, "library/skopeo", "1.0", kind)
			ref := e.proxy.Ref(fx.repo, fx.tag)

			raw := mustRun(t, bin, "--insecure-policy", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
			if raw != string(fx.manifest) {
				t.Errorf("skopeo inspect --raw differs from upstream's bytes:\n%s\nwant\n%s", raw, fx.manifest)
			}
			copyTo := func(src string) {
				t.Helper()
				dir := t.TempDir()
				mustRun(t, bin, "--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "docker://"+src, "dir:"+dir)
				top, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(top, fx.manifest) {
					t.Errorf("skopeo wrote a manifest with digest sha256:%s, want upstream's %s", sha256Hex(top), fx.digest)
				}
				// skopeo's dir: names blobs by hex digest and index children "<hex>.manifest.json".
				required := append([]v1.Hash{fx.nativeConfig}, fx.manifests[1:]...) // index children
				checkBlobFiles(t, dir, required, func(name string) string { return strings.TrimSuffix(name, ".manifest.json") })
			}
			copyTo(ref)

			e.hub.Reset()
			e.proxy.ResetSeen()
			copyTo(ref)
			copyTo(e.proxy.DigestRef(fx.repo, fx.digest))
			requireNoUpstreamGET(t, e.hub)
			if e.proxy.Seen("GET", "blobs") == 0 {
				t.Error("the second copies fetched no blob from the proxy; the test proves nothing")
			}
		})
	}
}

// The kubelet's own path: containerd's CRI PullImage of 127.0.0.1:PORT/docker.io/…, with no
// hosts.toml or mirror configured (plain HTTP because the host is loopback).
func TestContainerdPullsThroughTheProxyByCRI(t *testing.T) {
	for _, kind := range imageKinds {
		t.Run(kind.name, func(t *testing.T) {
			e := newEnv(t)
			fx := pushFixture(t, e.hub, "library/ctr", "1.0", kind)
			ref := e.proxy.Ref(fx.repo, fx.tag)
			ctx := context.Background()

			pull := func() {
				t.Helper()
				d := containerd.Start(t) // a fresh content store: every blob is fetched
				images := d.Images(t)
				id, err := images.PullImage(ctx, ref)
				if err != nil {
					t.Fatalf("%v\n%s", err, d.Log())
				}
				if id != fx.nativeConfig.String() {
					t.Errorf("PullImage answered image %s, want the config %s of the native image", id, fx.nativeConfig)
				}
				status, err := images.ImageStatus(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				want := e.proxy.DigestRef(fx.repo, fx.digest)
				if status == nil || !slices.Contains(status.GetRepoDigests(), want) {
					t.Errorf("ImageStatus = %v, want the repo digest %s (upstream's digest)", status, want)
				}
			}
			pull()

			e.hub.Reset()
			e.proxy.ResetSeen()
			pull()
			requireNoUpstreamGET(t, e.hub)
			if e.proxy.Seen("GET", "blobs") == 0 {
				t.Error("the second pull fetched no blob from the proxy; the test proves nothing")
			}
		})
	}
}

// Once a tag's TTL has passed, the next pull revalidates it with a HEAD, which Docker Hub
// does not count against the pull limit, and fetches nothing when the tag has not moved.
func TestAnExpiredTagIsRevalidatedWithAHeadOnly(t *testing.T) {
	bin := crane(t)
	e := newEnv(t, withTagTTL(0))
	fx := pushFixture(t, e.hub, "library/ttl", "1.0", imageKinds[3])
	ref := e.proxy.Ref(fx.repo, fx.tag)
	mustRun(t, bin, "pull", "--format=oci", ref, t.TempDir())

	e.hub.Reset()
	dir := t.TempDir()
	mustRun(t, bin, "pull", "--format=oci", ref, dir)
	checkOCILayout(t, dir, fx)
	requireNoUpstreamGET(t, e.hub)
	if n := e.hub.Counts().ManifestHEAD[fx.repo+":"+fx.tag]; n == 0 {
		t.Errorf("the expired tag was not revalidated upstream (manifest HEADs %v)", e.hub.Counts().ManifestHEAD)
	}
}
