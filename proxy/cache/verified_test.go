package cache_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/cache"
)

// storedBlobPath is where the file store keeps d under the env's root.
func (e *env) storedBlobPath(t *testing.T, d v1.Hash) string {
	t.Helper()
	path := filepath.Join(e.root, "blobs", "blobs", "sha256", d.Hex[:2], d.Hex)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stored file of %s: %v", d, err)
	}
	return path
}

// wholeRead reads d whole from the cache and reports how the read was verified.
func (e *env) wholeRead(t *testing.T, d v1.Hash) (got []byte, readErr error, how string) {
	t.Helper()
	hashed := e.metric(t, "hubcache_blob_whole_reads_total", map[string]string{"verification": "hashed"})
	trusted := e.metric(t, "hubcache_blob_whole_reads_total", map[string]string{"verification": "trusted"})
	b, err := e.c.Blob(t.Context(), app, d)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := b.Open(t.Context(), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, readErr = io.ReadAll(rc)
	switch {
	case e.metric(t, "hubcache_blob_whole_reads_total", map[string]string{"verification": "hashed"}) == hashed+1:
		how = "hashed"
	case e.metric(t, "hubcache_blob_whole_reads_total", map[string]string{"verification": "trusted"}) == trusted+1:
		how = "trusted"
	default:
		how = "neither"
	}
	return got, readErr, how
}

// filledBlob puts a 1 MiB blob in the store through a cold fill.
func (e *env) filledBlob(t *testing.T) (v1.Hash, []byte) {
	t.Helper()
	d, want := e.up.addBlob(t, app.Path, 1<<20)
	if _, err := readBlob(t.Context(), mustBlob(t, e, d), 0, -1); err != nil {
		t.Fatal(err)
	}
	e.waitFills(t)
	return d, want
}

// trustedBlob is filledBlob, read whole until the reads are trusted. The first warm read
// hashes the stored blob, unless the cold read already did (a fill that ended before its
// client opened it sends the stored blob).
func (e *env) trustedBlob(t *testing.T) (v1.Hash, []byte) {
	t.Helper()
	d, want := e.filledBlob(t)
	for i, wantHow := range []string{"", "trusted"} {
		got, err, how := e.wholeRead(t, d)
		if err != nil || !bytes.Equal(got, want) || (wantHow != "" && how != wantHow) {
			t.Fatalf("warm read %d: %d bytes, err %v, %s; want the blob, %s", i, len(got), err, how, wantHow)
		}
	}
	return d, want
}

// flipInPlace flips the middle byte of the file at path, writing it in place.
func flipInPlace(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, info.Size()/2); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, info.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func TestAnUnchangedBlobIsHashedOncePerVerifyInterval(t *testing.T) {
	e := newEnv(t, cache.WithVerifyInterval(time.Hour), cache.WithRacyWindow(0))
	d, want := e.trustedBlob(t)
	if got, err, how := e.wholeRead(t, d); err != nil || !bytes.Equal(got, want) || how != "trusted" {
		t.Fatalf("third warm read: %d bytes, err %v, %s; want the blob, trusted", len(got), err, how)
	}
	e.clock.Advance(time.Hour)
	if _, err, how := e.wholeRead(t, d); err != nil || how != "hashed" {
		t.Fatalf("read after the interval: %v, %s; want hashed", err, how)
	}
	if _, err, how := e.wholeRead(t, d); err != nil || how != "trusted" {
		t.Fatalf("read after that: %v, %s; want trusted", err, how)
	}
}

func TestAZeroVerifyIntervalHashesEveryWholeRead(t *testing.T) {
	e := newEnv(t, cache.WithVerifyInterval(0), cache.WithRacyWindow(0))
	d, _ := e.filledBlob(t)
	for i := range 3 {
		if _, err, how := e.wholeRead(t, d); err != nil || how != "hashed" {
			t.Fatalf("warm read %d: %v, %s; want hashed", i, err, how)
		}
	}
}

func TestADamagedFileIsCaughtEvenRightAfterATrustedRead(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"a byte flipped in place, modification time put back", func(t *testing.T, path string) {
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			flipInPlace(t, path)
			// Only the change time, which user space cannot set, still tells.
			if err := os.Chtimes(path, info.ModTime(), info.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		{"the file replaced by a damaged copy", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0xff
			tmp := path + ".new"
			if err := os.WriteFile(tmp, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cache.WithVerifyInterval(time.Hour), cache.WithRacyWindow(0))
			d, want := e.trustedBlob(t)

			tc.damage(t, e.storedBlobPath(t, d))
			got, err, how := e.wholeRead(t, d)
			if err == nil || how != "hashed" || len(got) >= len(want) {
				t.Fatalf("read of the damaged file: %d of %d bytes, err %v, %s; want it hashed and cut before its end", len(got), len(want), err, how)
			}
			if n := e.metric(t, "hubcache_blob_verify_failures_total", nil); n != 1 {
				t.Fatalf("verify failures = %v, want 1", n)
			}
			// Dropped: the next read fills again from upstream and gets the right bytes.
			got, err = readBlob(t.Context(), mustBlob(t, e, d), 0, -1)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read after the drop: %d bytes, %v", len(got), err)
			}
			if n := e.up.count("GET blob"); n != 2 {
				t.Fatalf("upstream blob GETs = %d, want 2 (the fill and the refill)", n)
			}
		})
	}
}

func mustBlob(t *testing.T, e *env, d v1.Hash) cache.Blob {
	t.Helper()
	b, err := e.c.Blob(t.Context(), app, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAVersionYoungerThanTheRacyWindowIsNotTrusted(t *testing.T) {
	e := newEnv(t, cache.WithVerifyInterval(time.Hour), cache.WithRacyWindow(time.Hour))
	d, _ := e.filledBlob(t)
	// The file was written moments ago: a second write in the same clock tick could keep its
	// version, so no read vouches for it yet.
	for i := range 3 {
		if _, err, how := e.wholeRead(t, d); err != nil || how != "hashed" {
			t.Fatalf("read %d: %v, %s; want hashed", i, err, how)
		}
	}
}

// flipWriter flips a byte in the middle of a file after the first bytes went out, as a write
// to the file while a trusted read is being sent.
type flipWriter struct {
	t       *testing.T
	path    string
	flipped bool
	got     bytes.Buffer
}

func (w *flipWriter) Write(p []byte) (int, error) {
	if !w.flipped && w.got.Len() > 0 {
		w.flipped = true
		flipInPlace(w.t, w.path)
	}
	return w.got.Write(p)
}

func TestAFileWrittenWhileATrustedReadIsSentIsCutBeforeItsEnd(t *testing.T) {
	e := newEnv(t, cache.WithVerifyInterval(time.Hour), cache.WithRacyWindow(0))
	d, want := e.trustedBlob(t)

	// Trusted again, sent the way the registry handler sends it (WriteTo); the file changes
	// after the first bytes are out.
	rc, err := mustBlob(t, e, d).Open(t.Context(), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	wt, ok := rc.(io.WriterTo)
	if !ok {
		t.Fatalf("a trusted read of a stored file (%T) cannot send itself", rc)
	}
	w := &flipWriter{t: t, path: e.storedBlobPath(t, d)}
	n, err := wt.WriteTo(w)
	if err == nil || n >= int64(len(want)) {
		t.Fatalf("sent %d of %d bytes, err %v; want the send cut before its end", n, len(want), err)
	}
	// The trust is gone: the next read is hashed, finds the damage, cuts and drops it.
	if got, err, how := e.wholeRead(t, d); err == nil || how != "hashed" || len(got) >= len(want) {
		t.Fatalf("next read: %d bytes, err %v, %s; want hashed and cut", len(got), err, how)
	}
}
