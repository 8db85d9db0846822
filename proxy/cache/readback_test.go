package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/cache"
)

// files lists the regular files under dir (none when dir does not exist).
func files(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// leftovers fails the test when a spool file or a temporary blob file is left in dir.
func leftovers(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"spool", filepath.Join("blobs", "tmp")} {
		if left := files(t, filepath.Join(dir, sub)); len(left) > 0 {
			t.Errorf("files left in %s: %v", sub, left)
		}
	}
}

func TestAFillOnTheFileStoreWritesEachByteOnceIntoTheStoresFile(t *testing.T) {
	dir := t.TempDir()
	e := newEnvIn(t, dir, nil)
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 1<<20)
	gate := make(chan struct{})
	e.up.set(func(f *fakeUpstream) { f.gate = gate })

	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := b.Open(ctx, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Upstream is stuck halfway: the reader gets that half but its last byte (held until
	// the digest checks out), read from the store's own temporary file; no spool file exists.
	half := make([]byte, len(want)/2-1)
	if _, err := io.ReadFull(rc, half); err != nil || !bytes.Equal(half, want[:len(half)]) {
		t.Fatalf("first half: %v", err)
	}
	if spooled := files(t, filepath.Join(dir, "spool")); len(spooled) > 0 {
		t.Errorf("spool files during a fill on the file store: %v", spooled)
	}
	if tmp := files(t, filepath.Join(dir, "blobs", "tmp")); len(tmp) != 1 {
		t.Errorf("temporary blob files during the fill: %v, want one", tmp)
	}
	close(gate)
	rest, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(rest, want[len(half):]) {
		t.Fatalf("second half: %d bytes, %v", len(rest), err)
	}
	e.waitFills(t)
	if object, linked := e.committed(t, app, d); !object || !linked {
		t.Fatalf("after the fill: object %v, linked %v; want both", object, linked)
	}
	leftovers(t, dir)
}

// endless is an upstream whose blob bodies never end and announce no size.
type endless struct{ *fakeUpstream }

func (endless) GetBlob(context.Context, string, string, v1.Hash) (io.ReadCloser, int64, error) {
	return io.NopCloser(zeros{}), -1, nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestAFailedFillOnTheFileStoreLeavesNoFileAndNoObject(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(f *fakeUpstream)
	}{
		{"a corrupt body", func(f *fakeUpstream) { f.corrupt = true }},
		{"a truncated body", func(f *fakeUpstream) { f.truncate = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			e := newEnvIn(t, dir, nil)
			ctx := context.Background()
			d, _ := e.up.addBlob(t, app.Path, 1<<20)
			e.up.set(tc.break_)
			b, err := e.c.Blob(ctx, app, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readBlob(ctx, b, 0, -1)
			if err == nil || int64(len(got)) >= b.Size() {
				t.Fatalf("read of a bad fill: %d bytes, %v; want an error before the last byte", len(got), err)
			}
			e.waitFills(t)
			if object, linked := e.committed(t, app, d); object || linked {
				t.Fatalf("bad fill left object %v, link %v", object, linked)
			}
			leftovers(t, dir)
		})
	}
	t.Run("an endless body", func(t *testing.T) {
		dir := t.TempDir()
		e := newEnvIn(t, dir, nil, cache.WithMaxUnknownBlobSize(1<<20))
		up := endless{e.up}
		c, err := cache.New(e.blobs, e.meta, up, cache.WithSpoolDir(filepath.Join(dir, "spool")), cache.WithLogger(slog.New(slog.DiscardHandler)),
			cache.WithMaxUnknownBlobSize(1<<20), cache.WithRegistries("docker.io"))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		d, _ := e.up.addBlob(t, app.Path, 10)
		b, err := c.Blob(ctx, app, d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readBlob(ctx, b, 0, -1)
		if err == nil || len(got) > 1<<20 {
			t.Fatalf("read of an endless fill: %d bytes, %v; want an error within the cap", len(got), err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if object, _ := e.committed(t, app, d); object {
			t.Fatal("an endless fill left an object")
		}
		leftovers(t, dir)
	})
}

// brokenStore is the file store whose writers fail (writeFails: the second Write;
// commitFails: Commit, which then removes the file, as the file store's failed rename does)
// and can still be read back.
type brokenStore struct {
	*file.Store
	writeFails, commitFails bool
	// cancelled, when set, is closed once a write was cancelled; Cancel then returns only
	// when release is closed.
	cancelled, release chan struct{}
}

func (s *brokenStore) Create(ctx context.Context, d v1.Hash) (blobstore.Writer, error) {
	w, err := s.Store.Create(ctx, d)
	if err != nil {
		return nil, err
	}
	return &brokenWriter{Writer: w, rb: w.(blobstore.ReadBacker), s: s}, nil
}

type brokenWriter struct {
	blobstore.Writer
	rb     blobstore.ReadBacker
	s      *brokenStore
	writes atomic.Int64
}

var errBroken = errors.New("broken store")

func (w *brokenWriter) Write(p []byte) (int, error) {
	if w.s.writeFails && w.writes.Add(1) > 1 {
		return 0, errBroken
	}
	return w.Writer.Write(p)
}

func (w *brokenWriter) Commit(ctx context.Context) error {
	if w.s.commitFails {
		_ = w.Writer.Cancel(ctx)
		return errBroken
	}
	return w.Writer.Commit(ctx)
}

func (w *brokenWriter) Cancel(ctx context.Context) error {
	err := w.Writer.Cancel(ctx)
	if w.s.cancelled != nil {
		close(w.s.cancelled)
		<-w.s.release
	}
	return err
}

func (w *brokenWriter) ReadBack() (blobstore.ReadAtCloser, error) { return w.rb.ReadBack() }

func TestAClientThatOpensAFailingFillAfterItsWriteWasCancelledGetsTheFillsError(t *testing.T) {
	dir := t.TempDir()
	store := &brokenStore{cancelled: make(chan struct{}), release: make(chan struct{})}
	e := newEnvIn(t, dir, func(f *file.Store) blobstore.Store { store.Store = f; return store })
	ctx := context.Background()
	d, _ := e.up.addBlob(t, app.Path, 1<<20)
	e.up.set(func(f *fakeUpstream) { f.truncate = true })
	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	// The fill failed and its store write is being cancelled.
	<-store.cancelled
	time.AfterFunc(50*time.Millisecond, func() { close(store.release) })
	rc, err := b.Open(ctx, 0, -1)
	if err == nil {
		rc.Close()
		t.Fatal("opening a failed fill succeeded")
	}
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("opening the fill = %v; want the fill's own error (upstream unavailable: a 503), not an internal error", err)
	}
	e.waitFills(t)
	leftovers(t, dir)
}

func TestAFileStoreWriteThatFailsFailsTheFillAndLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	store := &brokenStore{writeFails: true}
	e := newEnvIn(t, dir, func(f *file.Store) blobstore.Store { store.Store = f; return store })
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 1<<20)
	e.up.set(func(f *fakeUpstream) { f.gate = make(chan struct{}) })
	b, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readBlob(ctx, b, 0, -1)
	if err == nil || len(got) >= len(want) {
		t.Fatalf("read of a fill whose store failed: %d bytes, %v; want an error", len(got), err)
	}
	e.waitFills(t)
	if object, linked := e.committed(t, app, d); object || linked {
		t.Fatalf("object %v, link %v; want neither", object, linked)
	}
	leftovers(t, dir)
}

func TestAFileStoreCommitThatFailsPassesTheBytesThroughToEveryClient(t *testing.T) {
	dir := t.TempDir()
	store := &brokenStore{commitFails: true}
	e := newEnvIn(t, dir, func(f *file.Store) blobstore.Store { store.Store = f; return store })
	ctx := context.Background()
	d, want := e.up.addBlob(t, app.Path, 1<<20)
	gate := make(chan struct{})
	e.up.set(func(f *fakeUpstream) { f.gate = gate })

	early, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := early.Open(ctx, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// A second client has its Blob (its headers) but opens it only after the fill ended.
	late, err := e.c.Blob(ctx, app, d)
	if err != nil {
		t.Fatal(err)
	}
	close(gate)
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("client reading during the fill: %d bytes, %v", len(got), err)
	}
	e.waitFills(t)
	if got, err := readBlob(ctx, late, 0, -1); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("client opening after the fill passed through: %d bytes, %v", len(got), err)
	}
	e.waitFills(t)
	// The late client read the fill's own handle on the removed file, as it would a spool.
	if n := e.up.count("GET blob"); n != 1 {
		t.Errorf("upstream blob GETs = %d, want 1", n)
	}
	if object, linked := e.committed(t, app, d); object || linked {
		t.Fatalf("object %v, link %v; want neither", object, linked)
	}
	leftovers(t, dir)
}

// sendAll has the reader send itself (io.WriterTo: sendfile to a connection) into a buffer.
func sendAll(t *testing.T, rc io.ReadCloser) ([]byte, error) {
	t.Helper()
	wt, ok := rc.(io.WriterTo)
	if !ok {
		t.Fatalf("a fill reader (%T) cannot send itself", rc)
	}
	var buf bytes.Buffer
	n, err := wt.WriteTo(&buf)
	if n != int64(buf.Len()) {
		t.Errorf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes(), err
}

func TestAFillReaderSendsItselfWithTheBytesAndTheHoldBackOfRead(t *testing.T) {
	for _, spooled := range []bool{false, true} {
		name := "from the store's file"
		var wrap func(*file.Store) blobstore.Store
		if spooled {
			// A store whose writers cannot be read back: the fill has a spool file.
			name, wrap = "from a spool file", func(f *file.Store) blobstore.Store { return struct{ blobstore.Store }{noReadBack{f}} }
		}
		t.Run(name, func(t *testing.T) {
			e := newEnvIn(t, t.TempDir(), wrap)
			ctx := context.Background()
			d, want := e.up.addBlob(t, app.Path, 1<<20)
			gate := make(chan struct{})
			e.up.set(func(f *fakeUpstream) { f.gate = gate })
			b, err := e.c.Blob(ctx, app, d)
			if err != nil {
				t.Fatal(err)
			}
			whole, err := b.Open(ctx, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer whole.Close()
			part, err := b.Open(ctx, 1000, 300_000)
			if err != nil {
				t.Fatal(err)
			}
			defer part.Close()
			// The range is sent while upstream stalls, but for its last byte, held (as by
			// Read) until the digest checks out.
			type sent struct {
				b   []byte
				err error
			}
			ranged := make(chan sent, 1)
			go func() {
				b, err := sendAll(t, part)
				ranged <- sent{b, err}
			}()
			// A part read, then the rest sent once upstream goes on.
			first := make([]byte, 1000)
			if _, err := io.ReadFull(whole, first); err != nil {
				t.Fatal(err)
			}
			close(gate)
			if r := <-ranged; r.err != nil || !bytes.Equal(r.b, want[1000:301_000]) {
				t.Fatalf("range sent during the fill: %d bytes, %v", len(r.b), r.err)
			}
			rest, err := sendAll(t, whole)
			if err != nil || !bytes.Equal(append(first, rest...), want) {
				t.Fatalf("read then sent: %d bytes, %v", len(first)+len(rest), err)
			}
		})
	}
	t.Run("a corrupt fill is cut before its last byte", func(t *testing.T) {
		e := newEnv(t)
		ctx := context.Background()
		d, _ := e.up.addBlob(t, app.Path, 1<<20)
		e.up.set(func(f *fakeUpstream) { f.corrupt = true })
		b, err := e.c.Blob(ctx, app, d)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := b.Open(ctx, 0, -1)
		if err != nil {
			return // the fill failed already: no byte was sent
		}
		defer rc.Close()
		got, err := sendAll(t, rc)
		if err == nil || int64(len(got)) >= b.Size() {
			t.Fatalf("a corrupt fill sent %d bytes, %v; want an error before the last byte", len(got), err)
		}
	})
}

// noReadBack hides the file store writers' ReadBack.
type noReadBack struct{ *file.Store }

func (s noReadBack) Create(ctx context.Context, d v1.Hash) (blobstore.Writer, error) {
	w, err := s.Store.Create(ctx, d)
	if err != nil {
		return nil, err
	}
	return struct{ blobstore.Writer }{w}, nil
}
