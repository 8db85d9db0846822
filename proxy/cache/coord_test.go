package cache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/metadata/sqlite"
)

// peerUpstream hands out bodies that another replica stores (as proxy/fillcoord's followers do).
// With end set, a body ends only once end is closed, after all its bytes (as a holder's
// stream ends once the holder has stored the blob).
type peerUpstream struct {
	*fakeUpstream
	end chan struct{}
}

// endsOn returns io.EOF once end is closed.
type endsOn chan struct{}

func (e endsOn) Read([]byte) (int, error) {
	<-e
	return 0, io.EOF
}

type peerBody struct{ io.ReadCloser }

func (peerBody) StoredElsewhere() bool { return true }

func (p peerUpstream) GetBlob(ctx context.Context, registry, repo string, d v1.Hash) (io.ReadCloser, int64, error) {
	rc, size, err := p.fakeUpstream.GetBlob(ctx, registry, repo, d)
	if err != nil {
		return nil, 0, err
	}
	if p.end != nil {
		rc = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(rc, endsOn(p.end)), rc}
	}
	return peerBody{rc}, size, nil
}

// newPeerEnv is newEnv with an upstream whose blob bodies are stored elsewhere.
func newPeerEnv(t *testing.T) *env {
	t.Helper()
	return newPeerEnvEnding(t, nil)
}

// newPeerEnvEnding is newPeerEnv whose bodies end once end is closed (nil: at once).
func newPeerEnvEnding(t *testing.T, end chan struct{}) *env {
	t.Helper()
	dir := t.TempDir()
	blobs, err := file.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := sqlite.New(t.Context(), filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Close() })
	e := &env{up: newFakeUpstream(), blobs: blobs, meta: meta, reg: prometheus.NewRegistry()}
	c, err := cache.New(blobs, meta, peerUpstream{e.up, end},
		cache.WithRegisterer(e.reg),
		cache.WithSpoolDir(filepath.Join(dir, "spool")),
		cache.WithLogger(slog.New(slog.DiscardHandler)),
		cache.WithRegistries("docker.io"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	e.c = c
	return e
}

func (e *env) put(t *testing.T, d v1.Hash, b []byte) {
	t.Helper()
	w, err := e.blobs.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestAFillOfABodyStoredElsewhere(t *testing.T) {
	cases := []struct {
		name       string
		holderPuts bool // the replica holding the fill committed the object
		wantLinked bool
	}{
		{name: "links the object the holder committed", holderPuts: true, wantLinked: true},
		{name: "serves the bytes uncached when the holder stored nothing", holderPuts: false, wantLinked: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newPeerEnv(t)
			d, want := e.up.addBlob(t, app.Path, 1<<20)
			if tc.holderPuts {
				// Stat finds nothing before the fill: the holder commits while it runs.
				e.up.set(func(f *fakeUpstream) { f.gate = make(chan struct{}) })
			}
			b, err := e.c.Blob(t.Context(), app, d)
			if err != nil {
				t.Fatal(err)
			}
			if tc.holderPuts {
				e.put(t, d, want)
				e.up.set(func(f *fakeUpstream) { close(f.gate) })
			}
			got, err := readBlob(t.Context(), b, 0, -1)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes (err %v), want the %d-byte blob", len(got), err, len(want))
			}
			e.waitFills(t)
			object, linked := e.committed(t, app, d)
			if object != tc.holderPuts || linked != tc.wantLinked {
				t.Errorf("object %v, linked %v; want object %v, linked %v", object, linked, tc.holderPuts, tc.wantLinked)
			}
		})
	}
}

// A follower's clients get every verified byte and the end of their responses while the
// holder's stream has not ended yet (the holder is still storing the blob); the follower then
// links the object the holder stored.
func TestAFollowersClientsDoNotWaitForTheHolderToStore(t *testing.T) {
	end := make(chan struct{})
	e := newPeerEnvEnding(t, end)
	d, want := e.up.addBlob(t, app.Path, 1<<20)
	b, err := e.c.Blob(t.Context(), app, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readBlob(t.Context(), b, 0, -1)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (err %v) before the holder's stream ended, want the %d-byte blob", len(got), err, len(want))
	}
	if object, linked := e.committed(t, app, d); object || linked {
		t.Fatalf("object %v, linked %v before the holder stored it", object, linked)
	}
	e.put(t, d, want) // the holder commits, then ends its stream
	close(end)
	e.waitFills(t)
	if object, linked := e.committed(t, app, d); !object || !linked {
		t.Errorf("object %v, linked %v after the holder stored it; want both", object, linked)
	}
}

func TestOpenFillServesTheFillInProgressThenTheStoreAndNothingElse(t *testing.T) {
	e := newEnv(t)
	d, want := e.up.addBlob(t, app.Path, 1<<20)
	e.up.set(func(f *fakeUpstream) { f.gate = make(chan struct{}) })
	if _, err := e.c.Blob(t.Context(), app, d); err != nil {
		t.Fatal(err)
	}
	size, rc, err := e.c.OpenFill(t.Context(), d, 100)
	if err != nil || size != int64(len(want)) {
		t.Fatalf("OpenFill during the fill = (%d, %v)", size, err)
	}
	e.up.set(func(f *fakeUpstream) { close(f.gate) })
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || !bytes.Equal(got, want[100:]) {
		t.Fatalf("reading the fill from offset 100: %d bytes, %v", len(got), err)
	}
	e.waitFills(t)

	size, rc, err = e.c.OpenFill(t.Context(), d, 0)
	if err != nil || size != int64(len(want)) {
		t.Fatalf("OpenFill after the fill = (%d, %v)", size, err)
	}
	got, _ = io.ReadAll(rc)
	_ = rc.Close()
	if !bytes.Equal(got, want) {
		t.Fatal("OpenFill from the store returned other bytes")
	}
	if _, _, err := e.c.OpenFill(t.Context(), d, int64(len(want))+1); err == nil {
		t.Error("an offset past the end was accepted")
	}
	other, _ := e.up.addBlob(t, app.Path, 10)
	if _, _, err := e.c.OpenFill(t.Context(), other, 0); !errors.Is(err, cache.ErrNoFill) {
		t.Errorf("OpenFill of a blob neither filled nor stored = %v, want ErrNoFill", err)
	}
}
