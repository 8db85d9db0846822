package cache_test

import (
	"context"
	"runtime"
	"testing"
)

func TestReadersOfOneCachedManifestShareOneCopyOfItsBytes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := e.up.tag(app.Path, "latest", "one")
	if _, err := e.c.Manifest(ctx, app, d.String()); err != nil { // cache it
		t.Fatal(err)
	}
	runtime.GC() // the copy the fetch returned is gone: the next read comes from the store
	first, err := e.c.Manifest(ctx, app, d.String())
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		m, err := e.c.Manifest(ctx, app, d.String())
		if err != nil {
			t.Fatal(err)
		}
		if &m.Body[0] != &first.Body[0] {
			t.Fatal("a second reader of a cached manifest got its own copy of the bytes")
		}
	}
	runtime.KeepAlive(first.Body)
}
