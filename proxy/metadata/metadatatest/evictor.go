package metadatatest

import (
	"errors"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/metadata"
)

// EvictingStore is a store with the optional eviction capability.
type EvictingStore interface {
	metadata.Store
	metadata.Evictor
}

// RunEvictor runs the conformance suite of metadata.Evictor. newStore must return a fresh,
// empty store, closed by the caller.
func RunEvictor(t *testing.T, newStore func(t *testing.T) EvictingStore) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s EvictingStore)
	}{
		{"puts set the last access and touch only moves it forward", testTouch},
		{"candidates come least recently used first", testLRUOrder},
		{"a recently used manifest protects what it references, through an index", testProtection},
		{"forget-if-unused removes only idle, unprotected objects", testForgetIfUnused},
		{"references are replaced and need a recorded manifest", testSetReferences},
		{"forgetting an index drops its references", testForgetDropsReferences},
		{"total size counts each object once", testTotalSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
}

// Times in the future, because puts record "now" and Touch never moves backwards.
func hoursFromNow(base time.Time, h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }

func mustTouch(t *testing.T, s EvictingStore, d v1.Hash, at time.Time) {
	t.Helper()
	if err := s.Touch(t.Context(), d, at); err != nil {
		t.Fatalf("Touch(%s): %v", d, err)
	}
}

func candidates(t *testing.T, s EvictingStore, protectSince time.Time) []v1.Hash {
	t.Helper()
	cs, err := s.EvictionCandidates(t.Context(), protectSince, 100)
	if err != nil {
		t.Fatalf("EvictionCandidates: %v", err)
	}
	var ds []v1.Hash
	for _, c := range cs {
		ds = append(ds, c.Digest)
	}
	return ds
}

func equalDigests(a, b []v1.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testTouch(t *testing.T, s EvictingStore) {
	ctx := t.Context()
	before := time.Now()
	b := metadata.Blob{Digest: Digest("b"), Size: 1}
	mustPutBlob(t, s, repoA, b)
	at, err := s.LastAccess(ctx, b.Digest)
	if err != nil {
		t.Fatalf("LastAccess: %v", err)
	}
	if at.Before(before.Add(-time.Millisecond)) || at.After(time.Now().Add(time.Millisecond)) {
		t.Errorf("LastAccess after put = %v, want between %v and now", at, before)
	}
	future := hoursFromNow(before, 2)
	mustTouch(t, s, b.Digest, future)
	if at, err := s.LastAccess(ctx, b.Digest); err != nil || !sameInstant(at, future) {
		t.Errorf("LastAccess after Touch = %v, %v; want %v", at, err, future)
	}
	mustTouch(t, s, b.Digest, hoursFromNow(before, 1))
	if at, err := s.LastAccess(ctx, b.Digest); err != nil || !sameInstant(at, future) {
		t.Errorf("Touch moved the last access backwards: %v, %v; want %v", at, err, future)
	}
	// Re-putting never moves it backwards either.
	mustPutBlob(t, s, repoB, b)
	if at, err := s.LastAccess(ctx, b.Digest); err != nil || !sameInstant(at, future) {
		t.Errorf("PutBlob moved the last access backwards: %v, %v; want %v", at, err, future)
	}
	if _, err := s.LastAccess(ctx, Digest("unknown")); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("LastAccess of an unknown digest: error = %v, want ErrNotFound", err)
	}
	if err := s.Touch(ctx, Digest("unknown"), future); err != nil {
		t.Errorf("Touch of an unknown digest: %v", err)
	}
}

func testLRUOrder(t *testing.T, s EvictingStore) {
	base := time.Now()
	b1, b2, b3 := Digest("b1"), Digest("b2"), Digest("b3")
	m := metadata.Manifest{Digest: Digest("m"), MediaType: mfType, Size: 7}
	for _, d := range []v1.Hash{b3, b1, b2} {
		mustPutBlob(t, s, repoA, metadata.Blob{Digest: d, Size: 1})
	}
	mustPutManifest(t, s, repoA, m)
	mustTouch(t, s, b1, hoursFromNow(base, 1))
	mustTouch(t, s, m.Digest, hoursFromNow(base, 2))
	mustTouch(t, s, b2, hoursFromNow(base, 3))
	mustTouch(t, s, b3, hoursFromNow(base, 4))

	cs, err := s.EvictionCandidates(t.Context(), hoursFromNow(base, 10), 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []v1.Hash{b1, m.Digest, b2, b3}
	var got []v1.Hash
	for _, c := range cs {
		got = append(got, c.Digest)
	}
	if !equalDigests(got, want) {
		t.Fatalf("candidates = %v, want %v", got, want)
	}
	if cs[1].Kind != metadata.KindManifest || cs[1].Size != 7 || cs[0].Kind != metadata.KindBlob {
		t.Errorf("candidate details wrong: %+v", cs[:2])
	}
	if !sameInstant(cs[0].LastAccess, hoursFromNow(base, 1)) {
		t.Errorf("candidate last access = %v, want %v", cs[0].LastAccess, hoursFromNow(base, 1))
	}
	limited, err := s.EvictionCandidates(t.Context(), hoursFromNow(base, 10), 2)
	if err != nil || len(limited) != 2 || limited[0].Digest != b1 {
		t.Errorf("with limit 2: %+v, %v", limited, err)
	}
}

// layout records index → manifest → {l1, l2}, and a lone blob x.
func layout(t *testing.T, s EvictingStore) (index, manifest, l1, l2, x v1.Hash) {
	t.Helper()
	ctx := t.Context()
	index, manifest, l1, l2, x = Digest("index"), Digest("manifest"), Digest("l1"), Digest("l2"), Digest("x")
	mustPutManifest(t, s, repoA, metadata.Manifest{Digest: index, MediaType: indexType, Size: 10})
	mustPutManifest(t, s, repoA, metadata.Manifest{Digest: manifest, MediaType: mfType, Size: 20})
	for _, d := range []v1.Hash{l1, l2, x} {
		mustPutBlob(t, s, repoA, metadata.Blob{Digest: d, Size: 100})
	}
	if err := s.SetReferences(ctx, index, []v1.Hash{manifest}); err != nil {
		t.Fatalf("SetReferences(index): %v", err)
	}
	if err := s.SetReferences(ctx, manifest, []v1.Hash{l1, l2}); err != nil {
		t.Fatalf("SetReferences(manifest): %v", err)
	}
	return index, manifest, l1, l2, x
}

func testProtection(t *testing.T, s EvictingStore) {
	base := time.Now()
	index, manifest, l1, l2, x := layout(t, s)
	for _, d := range []v1.Hash{manifest, l1, l2, x} {
		mustTouch(t, s, d, hoursFromNow(base, 1))
	}
	mustTouch(t, s, index, hoursFromNow(base, 5))

	// The index was used after the cutoff: it, its manifest and their layers are kept.
	if got := candidates(t, s, hoursFromNow(base, 4)); !equalDigests(got, []v1.Hash{x}) {
		t.Errorf("candidates with a recent index = %v, want only %v", got, x)
	}
	// Nothing was used after this cutoff: everything is a candidate, index last.
	got := candidates(t, s, hoursFromNow(base, 6))
	if len(got) != 5 || got[4] != index {
		t.Errorf("candidates with an old index = %v, want all five, index last", got)
	}
}

func testForgetIfUnused(t *testing.T, s EvictingStore) {
	ctx := t.Context()
	base := time.Now()
	index, manifest, l1, l2, x := layout(t, s)
	for _, d := range []v1.Hash{manifest, l1, l2, x} {
		mustTouch(t, s, d, hoursFromNow(base, 1))
	}
	mustTouch(t, s, index, hoursFromNow(base, 5))
	protectSince := hoursFromNow(base, 4)

	tests := []struct {
		name           string
		d              v1.Hash
		accessedBefore time.Time
		want           bool
	}{
		{"a blob used after the candidate list was taken is kept", x, base.Add(30 * time.Minute), false},
		{"a layer of a recently used manifest is kept", l1, hoursFromNow(base, 2), false},
		{"an unknown digest removes nothing", Digest("unknown"), hoursFromNow(base, 2), false},
		{"an idle, unreferenced blob is removed", x, hoursFromNow(base, 2), true},
		{"a removed blob is not removed twice", x, hoursFromNow(base, 2), false},
	}
	for _, tc := range tests {
		removed, err := s.ForgetIfUnused(ctx, tc.d, tc.accessedBefore, protectSince)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if removed != tc.want {
			t.Errorf("%s: removed = %v, want %v", tc.name, removed, tc.want)
		}
	}
	_, err := s.GetBlob(ctx, repoA, x)
	wantNotFound(t, "GetBlob of an evicted blob", err)
	if _, err := s.GetBlob(ctx, repoA, l1); err != nil {
		t.Errorf("protected layer lost: %v", err)
	}
}

func testSetReferences(t *testing.T, s EvictingStore) {
	ctx := t.Context()
	base := time.Now()
	if err := s.SetReferences(ctx, Digest("nothing"), []v1.Hash{Digest("a")}); !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("SetReferences of an unknown manifest: error = %v, want ErrNotFound", err)
	}
	if err := s.SetReferences(ctx, Digest("nothing"), []v1.Hash{{Algorithm: "sha256", Hex: "../x"}}); err == nil {
		t.Errorf("SetReferences with an invalid child succeeded")
	}
	m := metadata.Manifest{Digest: Digest("m"), MediaType: mfType, Size: 1}
	a, b := Digest("a"), Digest("b")
	mustPutManifest(t, s, repoA, m)
	mustPutBlob(t, s, repoA, metadata.Blob{Digest: a, Size: 1})
	mustPutBlob(t, s, repoA, metadata.Blob{Digest: b, Size: 1})
	mustTouch(t, s, a, hoursFromNow(base, 1))
	mustTouch(t, s, b, hoursFromNow(base, 1))
	mustTouch(t, s, m.Digest, hoursFromNow(base, 5))
	if err := s.SetReferences(ctx, m.Digest, []v1.Hash{a, b, b}); err != nil {
		t.Fatalf("SetReferences with a duplicate child: %v", err)
	}
	if err := s.SetReferences(ctx, m.Digest, []v1.Hash{b}); err != nil {
		t.Fatalf("SetReferences: %v", err)
	}
	if got := candidates(t, s, hoursFromNow(base, 4)); !equalDigests(got, []v1.Hash{a}) {
		t.Errorf("after replacing the references, candidates = %v, want only %v", got, a)
	}
}

func testForgetDropsReferences(t *testing.T, s EvictingStore) {
	ctx := t.Context()
	base := time.Now()
	index, manifest, l1, l2, x := layout(t, s)
	for _, d := range []v1.Hash{manifest, l1, l2, x} {
		mustTouch(t, s, d, hoursFromNow(base, 1))
	}
	mustTouch(t, s, index, hoursFromNow(base, 5))
	if err := s.Forget(ctx, index); err != nil {
		t.Fatal(err)
	}
	if got := candidates(t, s, hoursFromNow(base, 4)); len(got) != 4 {
		t.Errorf("after forgetting the index, candidates = %v, want the other four", got)
	}
}

func testTotalSize(t *testing.T, s EvictingStore) {
	ctx := t.Context()
	if n, err := s.TotalSize(ctx); err != nil || n != 0 {
		t.Errorf("TotalSize of an empty store = %d, %v; want 0", n, err)
	}
	mustPutBlob(t, s, repoA, metadata.Blob{Digest: Digest("a"), Size: 40 << 30})
	mustPutBlob(t, s, repoB, metadata.Blob{Digest: Digest("a"), Size: 40 << 30})
	mustPutBlob(t, s, repoA, metadata.Blob{Digest: Digest("b"), Size: 5})
	mustPutManifest(t, s, repoA, metadata.Manifest{Digest: Digest("m"), MediaType: mfType, Size: 7})
	want := int64(40<<30 + 5 + 7)
	if n, err := s.TotalSize(ctx); err != nil || n != want {
		t.Errorf("TotalSize = %d, %v; want %d", n, err, want)
	}
}
