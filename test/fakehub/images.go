package fakehub

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Push stores img in repo (e.g. "library/nginx") under tag ("" pushes by digest only) and
// returns its manifest digest. Pushing goes straight to the inner registry: it is not
// counted, needs no token and ignores the failure modes.
func (h *Hub) Push(t testing.TB, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("fakehub: digest of image: %v", err)
	}
	if err := remote.Write(h.ref(t, repo, tag, d), img, remote.WithTransport(h.direct())); err != nil {
		t.Fatalf("fakehub: push %s:%s: %v", repo, tag, err)
	}
	h.linkImage(t, repo, img)
	return d
}

// PushIndex stores idx and every image in it in repo under tag ("" pushes by digest only)
// and returns the index digest. Like Push, it is not counted.
func (h *Hub) PushIndex(t testing.TB, repo, tag string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("fakehub: digest of index: %v", err)
	}
	if err := remote.WriteIndex(h.ref(t, repo, tag, d), idx, remote.WithTransport(h.direct())); err != nil {
		t.Fatalf("fakehub: push index %s:%s: %v", repo, tag, err)
	}
	h.linkIndex(t, repo, idx)
	return d
}

// Ref is the reference of repo:tag on this hub, for clients such as crane.
func (h *Hub) Ref(repo, tag string) string { return h.Host() + "/" + repo + ":" + tag }

// DigestRef is the reference of repo@digest on this hub.
func (h *Hub) DigestRef(repo string, d v1.Hash) string {
	return h.Host() + "/" + repo + "@" + d.String()
}

func (h *Hub) ref(t testing.TB, repo, tag string, d v1.Hash) name.Reference {
	t.Helper()
	s := h.DigestRef(repo, d)
	if tag != "" {
		s = h.Ref(repo, tag)
	}
	ref, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatalf("fakehub: reference %q: %v", s, err)
	}
	return ref
}

func (h *Hub) linkImage(t testing.TB, repo string, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatalf("fakehub: manifest: %v", err)
	}
	digests := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		digests = append(digests, l.Digest)
	}
	h.link(repo, digests...)
}

func (h *Hub) linkIndex(t testing.TB, repo string, idx v1.ImageIndex) {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("fakehub: index manifest: %v", err)
	}
	for _, desc := range im.Manifests {
		if desc.MediaType.IsIndex() {
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				t.Fatalf("fakehub: child index %s: %v", desc.Digest, err)
			}
			h.linkIndex(t, repo, child)
			continue
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatalf("fakehub: child image %s: %v", desc.Digest, err)
		}
		h.linkImage(t, repo, img)
	}
}

// direct is a transport that hands requests to the inner registry without the network,
// the token challenge, the counters or the failure modes.
func (h *Hub) direct() http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		// Server handlers expect a non-nil body; client requests may have none.
		if r.Body == nil {
			r.Body = http.NoBody
		}
		rec := httptest.NewRecorder()
		h.inner.ServeHTTP(rec, r)
		resp := rec.Result()
		resp.Request = r
		return resp, nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// RandomImage builds an image of layers random layers of layerSize bytes each (uncompressed;
// random bytes do not compress), for linux/amd64. oci selects OCI media types for the
// manifest, config and layers; otherwise Docker schema 2.
func RandomImage(t testing.TB, layers int, layerSize int64, oci bool) v1.Image {
	t.Helper()
	return randomImage(t, layers, layerSize, oci, v1.Platform{OS: "linux", Architecture: "amd64"})
}

func randomImage(t testing.TB, layers int, layerSize int64, oci bool, p v1.Platform) v1.Image {
	t.Helper()
	img := empty.Image
	layerType := types.DockerLayer
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		layerType = types.OCILayer
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("fakehub: config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("fakehub: set config: %v", err)
	}
	for i := 0; i < layers; i++ {
		l, err := random.Layer(layerSize, layerType)
		if err != nil {
			t.Fatalf("fakehub: random layer: %v", err)
		}
		img, err = mutate.AppendLayers(img, l)
		if err != nil {
			t.Fatalf("fakehub: append layer: %v", err)
		}
	}
	return img
}

// RandomIndex builds a multi-arch index with one random image per platform ("linux/amd64",
// "linux/arm64/v8", …). oci selects an OCI index of OCI images; otherwise a Docker manifest
// list of Docker images.
func RandomIndex(t testing.TB, platforms []string, layers int, layerSize int64, oci bool) v1.ImageIndex {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	if oci {
		idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	}
	for _, s := range platforms {
		parts := strings.Split(s, "/")
		if len(parts) < 2 || len(parts) > 3 {
			t.Fatalf("fakehub: platform %q is not os/arch[/variant]", s)
		}
		p := v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) == 3 {
			p.Variant = parts[2]
		}
		img := randomImage(t, layers, layerSize, oci, p)
		mt, err := img.MediaType()
		if err != nil {
			t.Fatalf("fakehub: media type: %v", err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: mt, Platform: &p},
		})
	}
	return idx
}

// Blob returns the bytes of a blob as stored (not counted), for tests comparing bodies.
func (h *Hub) Blob(t testing.TB, repo string, d v1.Hash) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	h.inner.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v2/%s/blobs/%s", repo, d), nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("fakehub: blob %s in %s: status %d", d, repo, rec.Code)
	}
	return rec.Body.Bytes()
}

// ReadAll reads img's config and every layer to the end, as a pulling client does, failing
// the test on any error. go-containerregistry checks each layer's digest at the end of its
// stream, so a damaged layer fails here.
func ReadAll(t testing.TB, img v1.Image) {
	t.Helper()
	if _, err := img.RawConfigFile(); err != nil {
		t.Fatalf("fakehub: config: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatalf("fakehub: layers: %v", err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("fakehub: layer: %v", err)
		}
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("fakehub: layer: %v", err)
		}
	}
}

// FirstLayer returns the digest of img's first layer.
func FirstLayer(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
