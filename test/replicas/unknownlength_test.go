package replicas

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubcache/hubcache/test/fakehub"
)

// filesUnder lists the regular files under dir (none when dir does not exist).
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			out = append(out, path)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// A blob that upstream sends without Content-Length and without end (a hostile or broken
// upstream) is cut at --max-unknown-blob-size: the client never gets a complete blob, nothing
// is cached, the spool file is removed, and the next request, with upstream well again, is
// fetched and cached as if nothing had happened.
func TestAnEndlessUpstreamBlobIsCutAtTheUnknownSizeCapAndLeavesNothingBehind(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 1, 1<<20, false)
	hub.Push(t, "library/endless", "v1", img)
	layer := imageBlobs(t, img)[1]
	const limit = 4 << 20
	// One process on embedded storage (files + SQLite under its data directory).
	proxy := start(t, "proxy", nil, "proxy",
		"--upstream=docker.io="+hub.URL(),
		"--max-unknown-blob-size=4194304")
	spool := filepath.Join(proxy.dataDir, "spool")
	// The file blob store under the data directory: objects, and uploads in progress.
	object := filepath.Join(proxy.dataDir, "blobs", "blobs", "sha256", layer.Hex[:2], layer.Hex)
	uploads := filepath.Join(proxy.dataDir, "blobs", "tmp")

	hub.SetDigestMode(layer, fakehub.Endless())
	var received atomic.Int64
	err := getBlob(t.Context(), proxy.URL(), "library/endless", layer, &received)
	if err == nil {
		t.Fatal("the endless blob was served as a complete, verified blob")
	}
	t.Logf("first GET: %v after %d bytes", err, received.Load())
	if received.Load() > limit {
		t.Errorf("the client received %d bytes, over the %d-byte cap", received.Load(), limit)
	}
	// The fill removes its spool as it fails; the client may see the cut a moment earlier.
	deadline := time.Now().Add(30 * time.Second)
	for len(filesUnder(t, spool)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := filesUnder(t, spool); len(left) > 0 {
		t.Errorf("spool files left after the failed fill: %v", left)
	}
	if _, err := os.Stat(object); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the blob store holds the blob after the failed fill (Stat: %v)", err)
	}
	if left := filesUnder(t, uploads); len(left) > 0 {
		t.Errorf("uploads left in the blob store after the failed fill: %v", left)
	}

	// Upstream behaves again: the next GET goes upstream (nothing was cached) and succeeds.
	hub.SetDigestMode(layer, fakehub.Normal())
	hub.Reset()
	if err := getBlob(t.Context(), proxy.URL(), "library/endless", layer, nil); err != nil {
		t.Fatalf("GET after upstream recovered: %v\n%s", err, proxy.log())
	}
	if n := hub.Counts().BlobGET[layer.String()]; n != 1 {
		t.Errorf("upstream saw %d GETs of the blob after recovery, want 1", n)
	}
	// And now it is cached.
	hub.Reset()
	if err := getBlob(t.Context(), proxy.URL(), "library/endless", layer, nil); err != nil {
		t.Fatalf("GET of the cached blob: %v", err)
	}
	if n := hub.Counts().BlobGET[layer.String()]; n != 0 {
		t.Errorf("upstream saw %d GETs of a blob that should be cached", n)
	}
	// Where the checks above looked is where the blob is kept. Clients get the last byte once
	// the digest checks out, before the store's commit (and the GET above may have joined that
	// fill still in progress): wait for the object, bounded.
	_, err = os.Stat(object)
	for deadline := time.Now().Add(30 * time.Second); err != nil && time.Now().Before(deadline); _, err = os.Stat(object) {
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("the cached blob is not at %s: %v", object, err)
	}
}
