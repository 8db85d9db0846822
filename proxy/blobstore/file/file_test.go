package file_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/blobstoretest"
	"github.com/hubcache/hubcache/proxy/blobstore/file"
)

func TestConformance(t *testing.T) {
	blobstoretest.Run(t, func(t *testing.T) blobstore.Store {
		s, err := file.New(t.TempDir())
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return s
	})
}

func TestObjectsAreLaidOutByDigest(t *testing.T) {
	root := t.TempDir()
	s, err := file.New(root)
	if err != nil {
		t.Fatal(err)
	}
	b, d := blobstoretest.Content(1, 100)
	w, err := s.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "blobs", "sha256", d.Hex[:2], d.Hex))
	if err != nil {
		t.Fatalf("object not at its content address: %v", err)
	}
	if string(got) != string(b) {
		t.Errorf("object file content differs")
	}
	assertEmptyDir(t, filepath.Join(root, "tmp"))
}

func TestCancelRemovesTheTemporaryFile(t *testing.T) {
	root := t.TempDir()
	s, err := file.New(root)
	if err != nil {
		t.Fatal(err)
	}
	b, d := blobstoretest.Content(2, 100)
	w, err := s.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "tmp"))
	if len(entries) != 1 {
		t.Fatalf("want one temporary file while writing, found %d", len(entries))
	}
	if err := w.Cancel(t.Context()); err != nil {
		t.Fatal(err)
	}
	assertEmptyDir(t, filepath.Join(root, "tmp"))
}

func TestNewRemovesStaleTemporaryFilesOnly(t *testing.T) {
	root := t.TempDir()
	if _, err := file.New(root); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(root, "tmp")
	stale := filepath.Join(tmp, "stale")
	fresh := filepath.Join(tmp, "fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file still there (err=%v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
}

func TestMalformedDigestsNameNoPath(t *testing.T) {
	root := t.TempDir()
	s, err := file.New(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := v1.Hash{Algorithm: "sha256", Hex: "../../../victim"}
	if err := s.Delete(t.Context(), d); !errors.Is(err, blobstore.ErrInvalidDigest) {
		t.Errorf("Delete error = %v, want ErrInvalidDigest", err)
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("file outside the store touched: %v", err)
	}
}

func TestNewRejectsAnEmptyRoot(t *testing.T) {
	if _, err := file.New(""); err == nil {
		t.Error("New(\"\") succeeded, want an error")
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in %s: %s", dir, e.Name())
	}
}
