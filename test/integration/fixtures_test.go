package integration

import (
	"bytes"
	"encoding/json"
	goruntime "runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/test/fakehub"
)

// imageKind is one shape of image a client may pull.
type imageKind struct {
	name  string
	index bool // a multi-arch index rather than one image
	oci   bool // OCI media types rather than Docker schema 2
}

var imageKinds = []imageKind{
	{name: "a single-arch Docker schema 2 image", index: false, oci: false},
	{name: "a single-arch OCI image", index: false, oci: true},
	{name: "a multi-arch Docker manifest list", index: true, oci: false},
	{name: "a multi-arch OCI index", index: true, oci: true},
}

// fixture is content pushed to the hub, with what a correct pull must reproduce.
type fixture struct {
	repo, tag string
	// digest and manifest are the top-level manifest (or index) exactly as upstream has it.
	digest   v1.Hash
	manifest []byte
	// nativeConfig is the config digest of the image for this machine's platform: the image
	// ID containerd answers with.
	nativeConfig v1.Hash
	// manifests and blobs are every manifest (index children included) and blob digest.
	manifests []v1.Hash
	blobs     []v1.Hash
}

// pushFixture pushes an image of kind to the hub as repo:tag.
func pushFixture(t *testing.T, hub *fakehub.Hub, repo, tag string, kind imageKind) fixture {
	t.Helper()
	const layers, layerSize = 2, 64 << 10
	fx := fixture{repo: repo, tag: tag}
	var images []v1.Image
	if kind.index {
		idx := withoutArtifactTypes(t, fakehub.RandomIndex(t, []string{"linux/" + goruntime.GOARCH, "linux/arm/v7", "linux/s390x"}, layers, layerSize, kind.oci))
		fx.digest = hub.PushIndex(t, repo, tag, idx)
		fx.manifest = must(idx.RawManifest())
		im := must(idx.IndexManifest())
		for _, desc := range im.Manifests {
			images = append(images, must(idx.Image(desc.Digest)))
		}
		fx.manifests = append(fx.manifests, fx.digest)
	} else {
		if goruntime.GOARCH != "amd64" {
			t.Fatalf("fakehub.RandomImage builds linux/amd64 images; containerd on %s would not run them", goruntime.GOARCH)
		}
		img := fakehub.RandomImage(t, layers, layerSize, kind.oci)
		fx.digest = hub.Push(t, repo, tag, img)
		fx.manifest = must(img.RawManifest())
		images = append(images, img)
	}
	for i, img := range images {
		fx.manifests = append(fx.manifests, must(img.Digest()))
		m := must(img.Manifest())
		fx.blobs = append(fx.blobs, m.Config.Digest)
		for _, l := range m.Layers {
			fx.blobs = append(fx.blobs, l.Digest)
		}
		if i == 0 {
			fx.nativeConfig = m.Config.Digest
		}
	}
	return fx
}

// withoutArtifactTypes drops the artifactType go-containerregistry puts on every child
// descriptor of an index. Docker Hub's image indexes do not carry it, and skopeo 1.9 cannot
// copy an index with it while preserving digests (it would re-serialise the index without it).
func withoutArtifactTypes(t *testing.T, idx v1.ImageIndex) v1.ImageIndex {
	t.Helper()
	im := must(idx.IndexManifest()).DeepCopy()
	for i := range im.Manifests {
		im.Manifests[i].ArtifactType = ""
	}
	raw, err := json.Marshal(im)
	if err != nil {
		t.Fatal(err)
	}
	return rawIndex{baseIndex: idx, raw: raw}
}

// rawIndex is an index served with other bytes than its base computes, children unchanged.
type rawIndex struct {
	baseIndex
	raw []byte
}

// baseIndex names the embedded index so that its field does not hide the ImageIndex method.
type baseIndex = v1.ImageIndex

func (r rawIndex) RawManifest() ([]byte, error) { return r.raw, nil }
func (r rawIndex) Size() (int64, error)         { return int64(len(r.raw)), nil }
func (r rawIndex) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(r.raw))
	return h, err
}
func (r rawIndex) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(r.raw))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
