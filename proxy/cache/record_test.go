package cache_test

import (
	"bytes"
	"context"
	"testing"
)

func TestABlobStoreDyingWhileAConfirmedBlobIsLinkedStillServesTheBlob(t *testing.T) {
	e := newFlakyEnv(t)
	d, want := e.up.addBlob(t, other.Path, 5000)
	e.up.set(func(f *fakeUpstream) { f.link(app.Path, d) })
	if _, err := e.read(t, other, d); err != nil {
		t.Fatal(err)
	}
	e.waitFills(t)
	// app finds the object (one Stat), upstream confirms it, the link is written, and the
	// store dies before the check that follows every recorded row.
	e.blobs.statsLeft.Store(1)
	e.blobs.statsLimited.Store(true)
	got, err := e.read(t, app, d)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("blob while the store died: %d bytes, %v; want it served", len(got), err)
	}
}

func TestABlobStoreDyingWhileAConfirmedManifestIsLinkedStillServesTheManifest(t *testing.T) {
	e := newFlakyEnv(t)
	d := e.up.tag(other.Path, "v1", "shared")
	e.up.set(func(f *fakeUpstream) { f.link(app.Path, d) })
	if _, err := e.c.Manifest(context.Background(), other, d.String()); err != nil {
		t.Fatal(err)
	}
	e.blobs.statsLeft.Store(1)
	e.blobs.statsLimited.Store(true)
	m, err := e.c.Manifest(context.Background(), app, d.String())
	if err != nil || m.Digest != d {
		t.Fatalf("manifest while the store died: %v; want it served", err)
	}
}
