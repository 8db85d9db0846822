package cache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/upstream"
)

// fakeUpstream is an in-memory upstream with switchable failures. Repositories are the path
// on the registry ("library/app"); only registry "docker.io" exists.
type fakeUpstream struct {
	mu        sync.Mutex
	manifests map[v1.Hash][]byte
	mediaType map[v1.Hash]string
	tags      map[string]v1.Hash // "repo:tag"
	blobs     map[v1.Hash][]byte
	repos     map[v1.Hash]map[string]bool // which repositories have a digest
	calls     map[string]int              // "GET manifest", "HEAD blob", …

	failWith error         // every call fails with it
	corrupt  bool          // blob bodies have one byte flipped
	truncate bool          // blob bodies stop halfway (size stays announced)
	gate     chan struct{} // when set, blob bodies stop halfway until it is closed
}

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{
		manifests: map[v1.Hash][]byte{},
		mediaType: map[v1.Hash]string{},
		tags:      map[string]v1.Hash{},
		blobs:     map[v1.Hash][]byte{},
		repos:     map[v1.Hash]map[string]bool{},
		calls:     map[string]int{},
	}
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fakeUpstream) link(repo string, d v1.Hash) {
	if f.repos[d] == nil {
		f.repos[d] = map[string]bool{}
	}
	f.repos[d][repo] = true
}

// addBlob stores a random blob under repo and returns its digest and bytes.
func (f *fakeUpstream) addBlob(t testing.TB, repo string, size int) (v1.Hash, []byte) {
	b := randomBytes(t, size)
	d := digestOf(b)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blobs[d] = b
	f.link(repo, d)
	return d, b
}

// tag points repo:tag at a new manifest with the given content and returns its digest.
func (f *fakeUpstream) tag(repo, tag, content string) v1.Hash {
	body := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"c":%q}}`, content))
	d := digestOf(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.manifests[d] = body
	f.mediaType[d] = "application/vnd.oci.image.manifest.v1+json"
	f.tags[repo+":"+tag] = d
	f.link(repo, d)
	return d
}

func (f *fakeUpstream) set(fn func(f *fakeUpstream)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeUpstream) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[key]
}

func (f *fakeUpstream) resetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = map[string]int{}
}

// resolve finds a manifest by tag or digest; the caller holds mu.
func (f *fakeUpstream) resolve(registry, repo, ref string) (v1.Hash, error) {
	if registry != "docker.io" {
		return v1.Hash{}, upstream.ErrUnknownRegistry
	}
	if f.failWith != nil {
		return v1.Hash{}, f.failWith
	}
	d, err := v1.NewHash(ref)
	if err != nil {
		var ok bool
		if d, ok = f.tags[repo+":"+ref]; !ok {
			return v1.Hash{}, upstream.ErrNotFound
		}
	}
	if _, ok := f.manifests[d]; !ok || !f.repos[d][repo] {
		return v1.Hash{}, upstream.ErrNotFound
	}
	return d, nil
}

func (f *fakeUpstream) HeadManifest(_ context.Context, registry, repo, ref string) (upstream.Descriptor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["HEAD manifest"]++
	d, err := f.resolve(registry, repo, ref)
	if err != nil {
		return upstream.Descriptor{}, err
	}
	return upstream.Descriptor{Digest: d, MediaType: f.mediaType[d], Size: int64(len(f.manifests[d]))}, nil
}

func (f *fakeUpstream) GetManifest(_ context.Context, registry, repo, ref string) ([]byte, upstream.Descriptor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GET manifest"]++
	d, err := f.resolve(registry, repo, ref)
	if err != nil {
		return nil, upstream.Descriptor{}, err
	}
	body := bytes.Clone(f.manifests[d])
	return body, upstream.Descriptor{Digest: d, MediaType: f.mediaType[d], Size: int64(len(body))}, nil
}

func (f *fakeUpstream) blob(registry, repo string, d v1.Hash) ([]byte, error) {
	if registry != "docker.io" {
		return nil, upstream.ErrUnknownRegistry
	}
	if f.failWith != nil {
		return nil, f.failWith
	}
	b, ok := f.blobs[d]
	if !ok || !f.repos[d][repo] {
		return nil, upstream.ErrNotFound
	}
	return b, nil
}

func (f *fakeUpstream) HeadBlob(_ context.Context, registry, repo string, d v1.Hash) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["HEAD blob"]++
	b, err := f.blob(registry, repo, d)
	return int64(len(b)), err
}

func (f *fakeUpstream) GetBlob(_ context.Context, registry, repo string, d v1.Hash) (io.ReadCloser, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GET blob"]++
	b, err := f.blob(registry, repo, d)
	if err != nil {
		return nil, 0, err
	}
	b = bytes.Clone(b)
	size := int64(len(b))
	if f.corrupt {
		b[len(b)/2] ^= 0xff
	}
	if f.truncate {
		b = b[:len(b)/2]
	}
	var r io.Reader = bytes.NewReader(b)
	if f.gate != nil {
		r = io.MultiReader(bytes.NewReader(b[:len(b)/2]), &gated{gate: f.gate, r: bytes.NewReader(b[len(b)/2:])})
	}
	return io.NopCloser(r), size, nil
}

func (f *fakeUpstream) RateLimit(string) (int, int, bool) { return 100, 42, true }

// gated blocks its first Read until gate is closed.
type gated struct {
	gate chan struct{}
	r    io.Reader
}

func (g *gated) Read(p []byte) (int, error) {
	<-g.gate
	return g.r.Read(p)
}
