// Package blobstoretest is the conformance suite every blobstore.Store implementation runs,
// the real backends (S3 servers) included. An implementation's test calls Run with a
// constructor that returns an empty store owned by that test.
package blobstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
)

// LargeSize is the size of the object the streaming test writes (smaller with -short).
const LargeSize = 64 << 20

// Run runs the whole suite. newStore must return a fresh, empty store; it is called once per
// subtest and the store is cleaned up by the caller (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) blobstore.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s blobstore.Store)
	}{
		{"a committed object can be stat'd and read whole", testCommitStatOpen},
		{"ranged reads return exactly the requested bytes", testRanges},
		{"an object is invisible until it is committed", testInvisibleUntilCommit},
		{"a cancelled write leaves nothing behind", testCancel},
		{"cancel after commit keeps the object", testCancelAfterCommit},
		{"concurrent writers of one digest all commit and the content is intact", testConcurrentWriters},
		{"distinct objects do not interfere", testDistinctObjects},
		{"delete is idempotent", testDelete},
		{"a missing object is ErrNotFound", testMissing},
		{"malformed digests are rejected", testMalformedDigest},
		{"a cancelled context stops each operation", testContextCancelled},
		{"cancelling the create context aborts the write", testCreateContextCancelled},
		{"an empty object can be stored", testEmptyObject},
		{"a reader that sends itself sends exactly its range", testWriteTo},
		{"a reader's version holds while the object is unchanged and moves when it is rewritten", testVersion},
		{"a writer read back shows what was written, before and after commit", testReadBack},
		{"a writer read back stays readable after cancel and cannot be opened again", testReadBackCancel},
		{"reading back while writing is safe", testReadBackConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
	// Not parallel: it measures the heap, so it must not share the process with the others.
	t.Run("a large object streams through without being held in memory", func(t *testing.T) {
		testLarge(t, newStore(t))
	})
}

// Content returns deterministic pseudo-random bytes for seed, with their digest.
func Content(seed uint64, n int) ([]byte, v1.Hash) {
	b := make([]byte, n)
	r := rand.NewChaCha8(seedBytes(seed))
	_, _ = r.Read(b)
	return b, Digest(b)
}

// Digest returns the sha256 digest of b.
func Digest(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// put writes b under d in chunks and commits it.
func put(t *testing.T, s blobstore.Store, d v1.Hash, b []byte) {
	t.Helper()
	ctx := t.Context()
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create(%s): %v", d, err)
	}
	for chunk := range slices(b, 1000) {
		if _, err := w.Write(chunk); err != nil {
			_ = w.Cancel(ctx)
			t.Fatalf("Write: %v", err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit(%s): %v", d, err)
	}
}

func slices(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}

func read(t *testing.T, s blobstore.Store, d v1.Hash, offset, length int64) []byte {
	t.Helper()
	rc, err := s.Open(t.Context(), d, offset, length)
	if err != nil {
		t.Fatalf("Open(%s, %d, %d): %v", d, offset, length, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s at %d+%d: %v", d, offset, length, err)
	}
	return got
}

func assertMissing(t *testing.T, s blobstore.Store, d v1.Hash) {
	t.Helper()
	if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat(%s) error = %v, want ErrNotFound", d, err)
	}
	rc, err := s.Open(t.Context(), d, 0, -1)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Open(%s) error = %v, want ErrNotFound", d, err)
	}
}

func assertContent(t *testing.T, s blobstore.Store, d v1.Hash, want []byte) {
	t.Helper()
	size, err := s.Stat(t.Context(), d)
	if err != nil {
		t.Fatalf("Stat(%s): %v", d, err)
	}
	if size != int64(len(want)) {
		t.Errorf("Stat(%s) = %d, want %d", d, size, len(want))
	}
	if got := read(t, s, d, 0, -1); !bytes.Equal(got, want) {
		t.Errorf("content of %s differs: got %d bytes (digest %s), want %d bytes", d, len(got), Digest(got), len(want))
	}
}

func testCommitStatOpen(t *testing.T, s blobstore.Store) {
	b, d := Content(1, 10_000)
	put(t, s, d, b)
	assertContent(t, s, d, b)
}

func testRanges(t *testing.T, s blobstore.Store) {
	b, d := Content(2, 4096)
	put(t, s, d, b)
	size := int64(len(b))
	tests := []struct {
		name           string
		offset, length int64
		want           []byte
	}{
		{"the first bytes", 0, 10, b[:10]},
		{"bytes in the middle", 100, 200, b[100:300]},
		{"from an offset to the end with length -1", 1000, -1, b[1000:]},
		{"the whole object with an explicit length", 0, size, b},
		{"the last byte", size - 1, 1, b[size-1:]},
		{"a length past the end stops at the end", size - 10, 100, b[size-10:]},
		{"an offset at the end gives no bytes", size, -1, []byte{}},
		{"a zero length gives no bytes", 5, 0, []byte{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := read(t, s, d, tc.offset, tc.length)
			if !bytes.Equal(got, tc.want) {
				t.Errorf("Open(%d, %d) returned %d bytes, want %d (content differs: %v)",
					tc.offset, tc.length, len(got), len(tc.want), len(got) == len(tc.want))
			}
		})
	}
}

func testInvisibleUntilCommit(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	b, d := Content(3, 5000)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(b[:2500]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	assertMissing(t, s, d)
	if _, err := w.Write(b[2500:]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	assertMissing(t, s, d)
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	assertContent(t, s, d, b)
}

func testCancel(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	b, d := Content(4, 5000)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	assertMissing(t, s, d)
	if err := w.Cancel(ctx); err != nil {
		t.Errorf("second Cancel: %v", err)
	}
	if err := w.Commit(ctx); err == nil {
		t.Errorf("Commit after Cancel succeeded, want an error")
	}
	assertMissing(t, s, d)
	// The digest can still be written afterwards.
	put(t, s, d, b)
	assertContent(t, s, d, b)
}

func testCancelAfterCommit(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	b, d := Content(5, 3000)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := w.Cancel(ctx); err != nil {
		t.Errorf("Cancel after Commit: %v", err)
	}
	assertContent(t, s, d, b)
}

func testConcurrentWriters(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	b, d := Content(6, 200_000)
	const writers = 8
	ws := make([]blobstore.Writer, writers)
	for i := range ws {
		w, err := s.Create(ctx, d)
		if err != nil {
			t.Fatalf("Create #%d: %v", i, err)
		}
		ws[i] = w
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i, w := range ws {
		wg.Go(func() {
			for chunk := range slices(b, 777) {
				if _, err := w.Write(chunk); err != nil {
					errs[i] = fmt.Errorf("write: %w", err)
					_ = w.Cancel(ctx)
					return
				}
			}
			if err := w.Commit(ctx); err != nil {
				errs[i] = fmt.Errorf("commit: %w", err)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer #%d: %v", i, err)
		}
	}
	assertContent(t, s, d, b)
}

func testDistinctObjects(t *testing.T, s blobstore.Store) {
	b1, d1 := Content(7, 1234)
	b2, d2 := Content(8, 4321)
	put(t, s, d1, b1)
	put(t, s, d2, b2)
	assertContent(t, s, d1, b1)
	assertContent(t, s, d2, b2)
	if err := s.Delete(t.Context(), d1); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertMissing(t, s, d1)
	assertContent(t, s, d2, b2)
}

func testDelete(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	b, d := Content(9, 100)
	if err := s.Delete(ctx, d); err != nil {
		t.Errorf("Delete of a missing object: %v", err)
	}
	put(t, s, d, b)
	if err := s.Delete(ctx, d); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertMissing(t, s, d)
	if err := s.Delete(ctx, d); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func testMissing(t *testing.T, s blobstore.Store) {
	_, d := Content(10, 10)
	assertMissing(t, s, d)
	rc, err := s.Open(t.Context(), d, 5, 2)
	if err == nil {
		rc.Close()
	}
	if !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("ranged Open of a missing object: error = %v, want ErrNotFound", err)
	}
}

func testMalformedDigest(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	valid := Digest([]byte("x")).Hex
	tests := []struct {
		name string
		d    v1.Hash
	}{
		{"an unknown algorithm", v1.Hash{Algorithm: "md5", Hex: valid}},
		{"sha512 is not supported", v1.Hash{Algorithm: "sha512", Hex: valid + valid}},
		{"an empty digest", v1.Hash{}},
		{"a short hex", v1.Hash{Algorithm: "sha256", Hex: valid[:20]}},
		{"uppercase hex", v1.Hash{Algorithm: "sha256", Hex: "AB" + valid[2:]}},
		{"a path traversal in the hex", v1.Hash{Algorithm: "sha256", Hex: "../../../../etc/passwd" + valid[22:]}},
		{"a path traversal in the algorithm", v1.Hash{Algorithm: "../sha256", Hex: valid}},
		{"a slash in the hex", v1.Hash{Algorithm: "sha256", Hex: valid[:30] + "/" + valid[31:]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := s.Create(ctx, tc.d)
			if err == nil {
				_ = w.Cancel(ctx)
				t.Errorf("Create(%q:%q) succeeded, want an error", tc.d.Algorithm, tc.d.Hex)
			}
			if _, err := s.Stat(ctx, tc.d); err == nil {
				t.Errorf("Stat(%q:%q) succeeded, want an error", tc.d.Algorithm, tc.d.Hex)
			}
			rc, err := s.Open(ctx, tc.d, 0, -1)
			if err == nil {
				rc.Close()
				t.Errorf("Open(%q:%q) succeeded, want an error", tc.d.Algorithm, tc.d.Hex)
			}
			if err := s.Delete(ctx, tc.d); err == nil {
				t.Errorf("Delete(%q:%q) succeeded, want an error", tc.d.Algorithm, tc.d.Hex)
			}
		})
	}
}

func testContextCancelled(t *testing.T, s blobstore.Store) {
	b, d := Content(11, 100)
	put(t, s, d, b)
	_, other := Content(12, 100)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Stat(ctx, d); !errors.Is(err, context.Canceled) {
		t.Errorf("Stat with a cancelled context: error = %v, want context.Canceled", err)
	}
	if rc, err := s.Open(ctx, d, 0, -1); err == nil {
		// Some stores open lazily: the read must then fail.
		_, rerr := io.ReadAll(rc)
		rc.Close()
		if rerr == nil {
			t.Errorf("Open and read with a cancelled context succeeded, want an error")
		}
	}
	if w, err := s.Create(ctx, other); err == nil {
		_ = w.Cancel(t.Context())
		t.Errorf("Create with a cancelled context succeeded, want an error")
	}

	// Commit with a cancelled context fails and leaves nothing visible.
	w, err := s.Create(t.Context(), other)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Commit(ctx); err == nil {
		t.Errorf("Commit with a cancelled context succeeded, want an error")
	}
	if err := w.Cancel(t.Context()); err != nil {
		t.Errorf("Cancel after a failed Commit: %v", err)
	}
	assertMissing(t, s, other)
	// The committed object is untouched.
	assertContent(t, s, d, b)
}

func testCreateContextCancelled(t *testing.T, s blobstore.Store) {
	b, d := Content(13, 50_000)
	ctx, cancel := context.WithCancel(t.Context())
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := w.Write(b[:1000]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	cancel()
	_, werr := w.Write(b[1000:])
	cerr := w.Commit(t.Context())
	if werr == nil && cerr == nil {
		t.Errorf("Write and Commit after the create context was cancelled both succeeded, want an error")
	}
	if err := w.Cancel(t.Context()); err != nil {
		t.Errorf("Cancel: %v", err)
	}
	assertMissing(t, s, d)
}

func testEmptyObject(t *testing.T, s blobstore.Store) {
	d := Digest(nil)
	put(t, s, d, nil)
	assertContent(t, s, d, []byte{})
	if got := read(t, s, d, 0, 0); len(got) != 0 {
		t.Errorf("read %d bytes from an empty object", len(got))
	}
}

// generator streams n deterministic bytes without holding them.
type generator struct {
	r *rand.ChaCha8
	n int64
}

func (g *generator) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	n, _ := g.r.Read(p)
	g.n -= int64(n)
	return n, nil
}

func largeSize() int64 {
	if testing.Short() {
		return 16 << 20
	}
	return LargeSize
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func testLarge(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	size := largeSize()
	h := sha256.New()
	if _, err := io.Copy(h, &generator{r: rand.NewChaCha8(seedBytes(14)), n: size}); err != nil {
		t.Fatal(err)
	}
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}

	before := heapAlloc()
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	buf := make([]byte, 32<<10)
	if _, err := io.CopyBuffer(w, &generator{r: rand.NewChaCha8(seedBytes(14)), n: size}, buf); err != nil {
		_ = w.Cancel(ctx)
		t.Fatalf("streaming %d bytes: %v", size, err)
	}
	// Measured before Commit, while everything written so far may still be held by the
	// writer: a store that buffers the whole object shows it here.
	during := heapAlloc()
	if during > before && during-before >= uint64(size) {
		t.Errorf("the writer holds %d MiB of heap after %d MiB were written: it buffers the object",
			(during-before)>>20, size>>20)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}

	got, err := s.Stat(ctx, d)
	if err != nil || got != size {
		t.Fatalf("Stat = %d, %v; want %d", got, err, size)
	}
	rc, err := s.Open(ctx, d, 0, -1)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer rc.Close()
	rh := sha256.New()
	n, err := io.Copy(rh, rc)
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	if n != size || hex.EncodeToString(rh.Sum(nil)) != d.Hex {
		t.Errorf("read back %d bytes with digest sha256:%x, want %d bytes with %s", n, rh.Sum(nil), size, d)
	}

	// A range near the end of a large object.
	off := size - 1<<20
	rr, err := s.Open(ctx, d, off, 4096)
	if err != nil {
		t.Fatalf("ranged Open: %v", err)
	}
	defer rr.Close()
	part, err := io.ReadAll(rr)
	if err != nil {
		t.Fatalf("ranged read: %v", err)
	}
	g := &generator{r: rand.NewChaCha8(seedBytes(14)), n: size}
	if _, err := io.CopyN(io.Discard, g, off); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 4096)
	if _, err := io.ReadFull(g, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(part, want) {
		t.Errorf("ranged read near the end of the large object returned wrong bytes")
	}
}

// testWriteTo checks readers that implement io.WriterTo (a file sent with sendfile): what
// they send is what Read would have returned, also after a partial Read.
func testWriteTo(t *testing.T, s blobstore.Store) {
	b, d := Content(14, 100_000)
	put(t, s, d, b)
	for _, tc := range []struct {
		name           string
		offset, length int64
		readFirst      int
	}{
		{"the whole object", 0, -1, 0},
		{"a range", 1000, 5000, 0},
		{"the rest of the object after a partial read", 0, -1, 777},
		{"the rest of a range after a partial read", 500, 60_000, 1234},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := s.Open(t.Context(), d, tc.offset, tc.length)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			wt, ok := rc.(io.WriterTo)
			if !ok {
				t.Logf("%T does not send itself: nothing to check", rc)
				return
			}
			end := int64(len(b))
			if tc.length >= 0 {
				end = tc.offset + tc.length
			}
			want := b[tc.offset:end]
			first := make([]byte, tc.readFirst)
			if _, err := io.ReadFull(rc, first); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			n, err := wt.WriteTo(&got)
			if err != nil || n != int64(got.Len()) {
				t.Fatalf("WriteTo: %d, %v (buffer has %d)", n, err, got.Len())
			}
			if all := append(first, got.Bytes()...); !bytes.Equal(all, want) {
				t.Fatalf("read %d + sent %d bytes, want the %d of the range", len(first), got.Len(), len(want))
			}
		})
	}
}

// testVersion checks readers that implement blobstore.Versioned. The store does not verify
// content, so other bytes can be written under the same digest: that is the damage a version
// must reveal.
func testVersion(t *testing.T, s blobstore.Store) {
	b, d := Content(15, 50_000)
	put(t, s, d, b)
	version := func() string {
		t.Helper()
		rc, err := s.Open(t.Context(), d, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if v, ok := rc.(blobstore.Versioned); ok {
			id, changed := v.Version()
			if id != "" && (changed.IsZero() || changed.After(time.Now().Add(time.Minute))) {
				t.Errorf("version %q changed at %v: want a time, not in the future", id, changed)
			}
			return id
		}
		return ""
	}
	first := version()
	if first == "" {
		t.Log("the store names no versions here: nothing to check")
		return
	}
	if again := version(); again != first {
		t.Fatalf("the unchanged object's version moved: %q, then %q", first, again)
	}
	// The same length, one byte different; a second later, as an object store's
	// Last-Modified has one-second resolution.
	time.Sleep(1100 * time.Millisecond)
	damaged := bytes.Clone(b)
	damaged[len(damaged)/2] ^= 0xff
	put(t, s, d, damaged)
	if after := version(); after == first {
		t.Fatalf("the rewritten object kept its version %q", first)
	}
}

// readBacker returns w as a blobstore.ReadBacker, skipping the test for a store whose writers
// cannot be read back (the interface is optional).
func readBacker(t *testing.T, w blobstore.Writer) blobstore.ReadBacker {
	t.Helper()
	rb, ok := w.(blobstore.ReadBacker)
	if !ok {
		_ = w.Cancel(t.Context())
		t.Skip("the store's writers cannot be read back")
	}
	return rb
}

func readAt(t *testing.T, r io.ReaderAt, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	m, err := r.ReadAt(p, off)
	if err != nil && !(errors.Is(err, io.EOF) && m == n) {
		t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, m, err)
	}
	return p
}

func testReadBack(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	b, d := Content(15, 100_000)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	rb := readBacker(t, w)
	defer func() { _ = w.Cancel(ctx) }()
	if _, err := w.Write(b[:40_000]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	early, err := rb.ReadBack()
	if err != nil {
		t.Fatalf("ReadBack: %v", err)
	}
	defer early.Close()
	if got := readAt(t, early, 0, 40_000); !bytes.Equal(got, b[:40_000]) {
		t.Errorf("read back the first 40000 bytes: content differs")
	}
	// Bytes written after the handle was opened are readable through it.
	if _, err := w.Write(b[40_000:]); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if got := readAt(t, early, 40_000, 60_000); !bytes.Equal(got, b[40_000:]) {
		t.Errorf("read back the bytes written after ReadBack: content differs")
	}
	// Reading back exposes nothing under the digest.
	assertMissing(t, s, d)
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if got := readAt(t, early, 0, len(b)); !bytes.Equal(got, b) {
		t.Errorf("the handle opened before Commit reads different bytes after it")
	}
	late, err := rb.ReadBack()
	if err != nil {
		t.Fatalf("ReadBack after Commit: %v", err)
	}
	defer late.Close()
	if got := readAt(t, late, 0, len(b)); !bytes.Equal(got, b) {
		t.Errorf("ReadBack after Commit reads different bytes")
	}
	assertContent(t, s, d, b)
}

func testReadBackCancel(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	b, d := Content(16, 50_000)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	rb := readBacker(t, w)
	if _, err := w.Write(b); err != nil {
		t.Fatalf("Write: %v", err)
	}
	h, err := rb.ReadBack()
	if err != nil {
		t.Fatalf("ReadBack: %v", err)
	}
	defer h.Close()
	if err := w.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if got := readAt(t, h, 0, len(b)); !bytes.Equal(got, b) {
		t.Errorf("a handle opened before Cancel reads different bytes after it")
	}
	if h2, err := rb.ReadBack(); err == nil {
		h2.Close()
		t.Errorf("ReadBack after Cancel succeeded, want an error")
	}
	assertMissing(t, s, d)
}

func testReadBackConcurrent(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	b, d := Content(17, 300_000)
	w, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	rb := readBacker(t, w)
	var written atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			// Each reader opens handles while the writer writes and commits, and checks
			// every byte the writer had written when the reader looked.
			for {
				n := written.Load()
				h, err := rb.ReadBack()
				if err != nil {
					errs <- fmt.Errorf("ReadBack after %d bytes: %w", n, err)
					return
				}
				p := make([]byte, n)
				m, rerr := h.ReadAt(p, 0)
				h.Close()
				if int64(m) != n || (rerr != nil && !errors.Is(rerr, io.EOF)) {
					errs <- fmt.Errorf("ReadAt of the %d bytes written: %d, %v", n, m, rerr)
					return
				}
				if !bytes.Equal(p, b[:n]) {
					errs <- fmt.Errorf("the %d bytes read back differ", n)
					return
				}
				if n == int64(len(b)) || ctx.Err() != nil {
					return
				}
			}
		})
	}
	for chunk := range slices(b, 10_000) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatalf("Write: %v", err)
		}
		written.Add(int64(len(chunk)))
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assertContent(t, s, d, b)
}
