// Package metadatatest is the conformance suite every metadata.Store implementation runs
// (SQLite and Postgres). An implementation's test calls Run with a constructor that returns an
// empty store owned by that test.
package metadatatest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/metadata"
)

// Run runs the whole suite. newStore must return a fresh, empty store; it is called once per
// subtest and closed by the caller (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) metadata.Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s metadata.Store)
	}{
		{"an unknown tag is ErrNotFound", testTagMissing},
		{"a tag is put, read back and replaced", testTagPutReplace},
		{"tags are scoped to their repository", testTagScoped},
		{"timestamps round-trip to the millisecond in UTC", testTimestamps},
		{"a manifest is linked per repository", testManifestLinked},
		{"a blob linked to one repository is not found under another", testBlobLinked},
		{"manifests and blobs are separate kinds", testKindsSeparate},
		{"puts are idempotent", testIdempotent},
		{"sizes beyond 32 bits round-trip", testLargeSize},
		{"long repository names are kept whole", testLongNames},
		{"forget removes the digest, its links and the tags pointing at it", testForget},
		{"forget of an unknown digest is not an error", testForgetMissing},
		{"a forgotten digest can be recorded again", testForgetThenPut},
		{"invalid input is rejected", testInvalid},
		{"many goroutines read and write at once", testConcurrency},
		{"a repository's visibility is recorded, replaced and kept per repository", testVisibility},
		{"ping answers", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
}

// Digest returns a deterministic, well-formed digest named by s.
func Digest(s string) v1.Hash {
	sum := sha256.Sum256([]byte(s))
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

const (
	repoA     = "docker.io/library/nginx"
	repoB     = "docker.io/someone/private"
	indexType = "application/vnd.oci.image.index.v1+json"
	mfType    = "application/vnd.docker.distribution.manifest.v2+json"
)

// now is a timestamp with sub-millisecond digits in a non-UTC zone, to catch stores that
// lose precision or the instant.
func now() time.Time {
	return time.Now().In(time.FixedZone("UTC+5:30", 5*3600+1800))
}

func mustPutTag(t *testing.T, s metadata.Store, repo, tag string, tg metadata.Tag) {
	t.Helper()
	if err := s.PutTag(t.Context(), repo, tag, tg); err != nil {
		t.Fatalf("PutTag(%s:%s): %v", repo, tag, err)
	}
}

func mustPutManifest(t *testing.T, s metadata.Store, repo string, m metadata.Manifest) {
	t.Helper()
	if err := s.PutManifest(t.Context(), repo, m); err != nil {
		t.Fatalf("PutManifest(%s, %s): %v", repo, m.Digest, err)
	}
}

func mustPutBlob(t *testing.T, s metadata.Store, repo string, b metadata.Blob) {
	t.Helper()
	if err := s.PutBlob(t.Context(), repo, b); err != nil {
		t.Fatalf("PutBlob(%s, %s): %v", repo, b.Digest, err)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, metadata.ErrNotFound) {
		t.Errorf("%s: error = %v, want ErrNotFound", what, err)
	}
}

func sameInstant(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Millisecond && d < time.Millisecond
}

func testTagMissing(t *testing.T, s metadata.Store) {
	_, err := s.GetTag(t.Context(), repoA, "latest")
	wantNotFound(t, "GetTag of an unknown tag", err)
}

func testTagPutReplace(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	first := metadata.Tag{Digest: Digest("one"), CheckedAt: now()}
	mustPutTag(t, s, repoA, "latest", first)
	got, err := s.GetTag(ctx, repoA, "latest")
	if err != nil {
		t.Fatalf("GetTag: %v", err)
	}
	if got.Digest != first.Digest || !sameInstant(got.CheckedAt, first.CheckedAt) {
		t.Errorf("GetTag = %+v, want %+v", got, first)
	}

	second := metadata.Tag{Digest: Digest("two"), CheckedAt: first.CheckedAt.Add(time.Minute)}
	mustPutTag(t, s, repoA, "latest", second)
	got, err = s.GetTag(ctx, repoA, "latest")
	if err != nil {
		t.Fatalf("GetTag: %v", err)
	}
	if got.Digest != second.Digest || !sameInstant(got.CheckedAt, second.CheckedAt) {
		t.Errorf("after replace GetTag = %+v, want %+v", got, second)
	}

	// Revalidation refreshes CheckedAt for an unchanged digest.
	third := metadata.Tag{Digest: second.Digest, CheckedAt: second.CheckedAt.Add(time.Hour)}
	mustPutTag(t, s, repoA, "latest", third)
	got, err = s.GetTag(ctx, repoA, "latest")
	if err != nil {
		t.Fatalf("GetTag: %v", err)
	}
	if !sameInstant(got.CheckedAt, third.CheckedAt) {
		t.Errorf("CheckedAt not refreshed: got %v, want %v", got.CheckedAt, third.CheckedAt)
	}
}

func testTagScoped(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	mustPutTag(t, s, repoA, "1.27", metadata.Tag{Digest: Digest("a"), CheckedAt: now()})
	mustPutTag(t, s, repoB, "1.27", metadata.Tag{Digest: Digest("b"), CheckedAt: now()})
	_, err := s.GetTag(ctx, "docker.io/library/other", "1.27")
	wantNotFound(t, "GetTag under a repository without the tag", err)
	_, err = s.GetTag(ctx, repoA, "1.28")
	wantNotFound(t, "GetTag of another tag", err)
	a, errA := s.GetTag(ctx, repoA, "1.27")
	b, errB := s.GetTag(ctx, repoB, "1.27")
	if errA != nil || errB != nil {
		t.Fatalf("GetTag: %v, %v", errA, errB)
	}
	if a.Digest != Digest("a") || b.Digest != Digest("b") {
		t.Errorf("tags mixed across repositories: %s, %s", a.Digest, b.Digest)
	}
}

func testTimestamps(t *testing.T, s metadata.Store) {
	tests := []struct {
		name string
		at   time.Time
	}{
		{"now in a non-UTC zone", now()},
		{"a past instant with nanoseconds", time.Date(2021, 3, 4, 5, 6, 7, 891234567, time.UTC)},
		{"far in the future", time.Date(2199, 12, 31, 23, 59, 59, 999000000, time.UTC)},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tag := fmt.Sprintf("t%d", i)
			mustPutTag(t, s, repoA, tag, metadata.Tag{Digest: Digest(tag), CheckedAt: tc.at})
			got, err := s.GetTag(t.Context(), repoA, tag)
			if err != nil {
				t.Fatalf("GetTag: %v", err)
			}
			if !sameInstant(got.CheckedAt, tc.at) {
				t.Errorf("CheckedAt = %v, want %v (within 1ms)", got.CheckedAt, tc.at)
			}
			if got.CheckedAt.Location() != time.UTC {
				t.Errorf("CheckedAt location = %v, want UTC", got.CheckedAt.Location())
			}
		})
	}
}

func testManifestLinked(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	m := metadata.Manifest{Digest: Digest("index"), MediaType: indexType, Size: 1234}
	_, err := s.GetManifest(ctx, repoA, m.Digest)
	wantNotFound(t, "GetManifest before Put", err)

	mustPutManifest(t, s, repoA, m)
	got, err := s.GetManifest(ctx, repoA, m.Digest)
	if err != nil {
		t.Fatalf("GetManifest: %v", err)
	}
	if got != m {
		t.Errorf("GetManifest = %+v, want %+v", got, m)
	}
	_, err = s.GetManifest(ctx, repoB, m.Digest)
	wantNotFound(t, "GetManifest under an unlinked repository", err)

	mustPutManifest(t, s, repoB, m)
	if got, err := s.GetManifest(ctx, repoB, m.Digest); err != nil || got != m {
		t.Errorf("GetManifest under the second repository = %+v, %v; want %+v", got, err, m)
	}
}

func testBlobLinked(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	b := metadata.Blob{Digest: Digest("layer"), Size: 999}
	mustPutBlob(t, s, repoA, b)
	got, err := s.GetBlob(ctx, repoA, b.Digest)
	if err != nil {
		t.Fatalf("GetBlob: %v", err)
	}
	if got != b {
		t.Errorf("GetBlob = %+v, want %+v", got, b)
	}
	_, err = s.GetBlob(ctx, repoB, b.Digest)
	wantNotFound(t, "GetBlob under a repository the blob is not linked to", err)
	_, err = s.GetBlob(ctx, repoA, Digest("other"))
	wantNotFound(t, "GetBlob of an unknown digest", err)

	mustPutBlob(t, s, repoB, b)
	if got, err := s.GetBlob(ctx, repoB, b.Digest); err != nil || got != b {
		t.Errorf("GetBlob after linking to the second repository = %+v, %v; want %+v", got, err, b)
	}
}

func testKindsSeparate(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	m := metadata.Manifest{Digest: Digest("m"), MediaType: mfType, Size: 10}
	b := metadata.Blob{Digest: Digest("b"), Size: 20}
	mustPutManifest(t, s, repoA, m)
	mustPutBlob(t, s, repoA, b)
	_, err := s.GetBlob(ctx, repoA, m.Digest)
	wantNotFound(t, "GetBlob of a manifest digest", err)
	_, err = s.GetManifest(ctx, repoA, b.Digest)
	wantNotFound(t, "GetManifest of a blob digest", err)
}

func testIdempotent(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	m := metadata.Manifest{Digest: Digest("m"), MediaType: mfType, Size: 10}
	b := metadata.Blob{Digest: Digest("b"), Size: 20}
	tg := metadata.Tag{Digest: m.Digest, CheckedAt: now()}
	for range 3 {
		mustPutManifest(t, s, repoA, m)
		mustPutBlob(t, s, repoA, b)
		mustPutTag(t, s, repoA, "latest", tg)
	}
	if got, err := s.GetManifest(ctx, repoA, m.Digest); err != nil || got != m {
		t.Errorf("GetManifest = %+v, %v; want %+v", got, err, m)
	}
	if got, err := s.GetBlob(ctx, repoA, b.Digest); err != nil || got != b {
		t.Errorf("GetBlob = %+v, %v; want %+v", got, err, b)
	}
	if got, err := s.GetTag(ctx, repoA, "latest"); err != nil || got.Digest != tg.Digest {
		t.Errorf("GetTag = %+v, %v; want %+v", got, err, tg)
	}
}

func testLargeSize(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	b := metadata.Blob{Digest: Digest("huge"), Size: 40 << 30}
	mustPutBlob(t, s, repoA, b)
	if got, err := s.GetBlob(ctx, repoA, b.Digest); err != nil || got.Size != b.Size {
		t.Errorf("GetBlob = %+v, %v; want size %d", got, err, b.Size)
	}
}

func testLongNames(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	repo := "docker.io/" + strings.Repeat("a", 240) + "/x"
	tag := strings.Repeat("t", 128)
	mustPutTag(t, s, repo, tag, metadata.Tag{Digest: Digest("long"), CheckedAt: now()})
	if got, err := s.GetTag(ctx, repo, tag); err != nil || got.Digest != Digest("long") {
		t.Errorf("GetTag with long names = %+v, %v", got, err)
	}
	_, err := s.GetTag(ctx, repo[:len(repo)-1], tag)
	wantNotFound(t, "GetTag with a prefix of the repository", err)
}

func testForget(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	gone := metadata.Manifest{Digest: Digest("gone"), MediaType: mfType, Size: 1}
	kept := metadata.Manifest{Digest: Digest("kept"), MediaType: mfType, Size: 2}
	blob := metadata.Blob{Digest: Digest("blob"), Size: 3}
	for _, repo := range []string{repoA, repoB} {
		mustPutManifest(t, s, repo, gone)
		mustPutManifest(t, s, repo, kept)
		mustPutBlob(t, s, repo, blob)
	}
	mustPutTag(t, s, repoA, "gone", metadata.Tag{Digest: gone.Digest, CheckedAt: now()})
	mustPutTag(t, s, repoB, "gone-too", metadata.Tag{Digest: gone.Digest, CheckedAt: now()})
	mustPutTag(t, s, repoA, "kept", metadata.Tag{Digest: kept.Digest, CheckedAt: now()})

	if err := s.Forget(ctx, gone.Digest); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	for _, repo := range []string{repoA, repoB} {
		_, err := s.GetManifest(ctx, repo, gone.Digest)
		wantNotFound(t, "GetManifest of a forgotten digest in "+repo, err)
		if _, err := s.GetManifest(ctx, repo, kept.Digest); err != nil {
			t.Errorf("GetManifest of another digest in %s: %v", repo, err)
		}
		if _, err := s.GetBlob(ctx, repo, blob.Digest); err != nil {
			t.Errorf("GetBlob of another digest in %s: %v", repo, err)
		}
	}
	_, err := s.GetTag(ctx, repoA, "gone")
	wantNotFound(t, "GetTag pointing at a forgotten digest", err)
	_, err = s.GetTag(ctx, repoB, "gone-too")
	wantNotFound(t, "GetTag pointing at a forgotten digest in another repository", err)
	if _, err := s.GetTag(ctx, repoA, "kept"); err != nil {
		t.Errorf("GetTag pointing elsewhere: %v", err)
	}

	if err := s.Forget(ctx, blob.Digest); err != nil {
		t.Fatalf("Forget blob: %v", err)
	}
	for _, repo := range []string{repoA, repoB} {
		_, err := s.GetBlob(ctx, repo, blob.Digest)
		wantNotFound(t, "GetBlob of a forgotten blob in "+repo, err)
	}
}

func testForgetMissing(t *testing.T, s metadata.Store) {
	if err := s.Forget(t.Context(), Digest("never")); err != nil {
		t.Errorf("Forget of an unknown digest: %v", err)
	}
}

func testForgetThenPut(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	b := metadata.Blob{Digest: Digest("again"), Size: 5}
	mustPutBlob(t, s, repoA, b)
	if err := s.Forget(ctx, b.Digest); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	mustPutBlob(t, s, repoA, b)
	if got, err := s.GetBlob(ctx, repoA, b.Digest); err != nil || got != b {
		t.Errorf("GetBlob after re-put = %+v, %v; want %+v", got, err, b)
	}
}

func testInvalid(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	d := Digest("x")
	if err := s.PutBlob(ctx, repoA, metadata.Blob{Size: 1}); err == nil {
		t.Error("PutBlob with an empty digest succeeded")
	}
	if err := s.PutBlob(ctx, "", metadata.Blob{Digest: d, Size: 1}); err == nil {
		t.Error("PutBlob with an empty repository succeeded")
	}
	if err := s.PutBlob(ctx, repoA, metadata.Blob{Digest: d, Size: -1}); err == nil {
		t.Error("PutBlob with a negative size succeeded")
	}
	if err := s.PutManifest(ctx, repoA, metadata.Manifest{Size: 1, MediaType: mfType}); err == nil {
		t.Error("PutManifest with an empty digest succeeded")
	}
	if err := s.PutTag(ctx, repoA, "", metadata.Tag{Digest: d, CheckedAt: now()}); err == nil {
		t.Error("PutTag with an empty tag succeeded")
	}
	if err := s.PutTag(ctx, repoA, "latest", metadata.Tag{CheckedAt: now()}); err == nil {
		t.Error("PutTag with an empty digest succeeded")
	}
	// Nothing half-written: the repository has no such records.
	_, err := s.GetBlob(ctx, repoA, d)
	wantNotFound(t, "GetBlob after rejected puts", err)
}

func testConcurrency(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	const workers, rounds = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				// Shared digests and tags make the writers collide on purpose.
				shared := Digest(fmt.Sprintf("shared-%d", r%5))
				own := Digest(fmt.Sprintf("own-%d-%d", w, r))
				repo := fmt.Sprintf("docker.io/library/r%d", r%3)
				if err := s.PutBlob(ctx, repo, metadata.Blob{Digest: shared, Size: 1}); err != nil {
					errs <- fmt.Errorf("PutBlob shared: %w", err)
				}
				if err := s.PutBlob(ctx, repo, metadata.Blob{Digest: own, Size: 2}); err != nil {
					errs <- fmt.Errorf("PutBlob own: %w", err)
				}
				if err := s.PutManifest(ctx, repo, metadata.Manifest{Digest: shared, MediaType: mfType, Size: 3}); err != nil {
					errs <- fmt.Errorf("PutManifest: %w", err)
				}
				if err := s.PutTag(ctx, repo, "latest", metadata.Tag{Digest: shared, CheckedAt: now()}); err != nil {
					errs <- fmt.Errorf("PutTag: %w", err)
				}
				if _, err := s.GetBlob(ctx, repo, own); err != nil {
					errs <- fmt.Errorf("GetBlob own right after PutBlob: %w", err)
				}
				if _, err := s.GetTag(ctx, repo, "latest"); err != nil {
					errs <- fmt.Errorf("GetTag: %w", err)
				}
				if r%7 == 6 {
					if err := s.Forget(ctx, own); err != nil {
						errs <- fmt.Errorf("Forget: %w", err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n < 10 {
			t.Error(err)
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%d operations failed", n)
	}
	for r := range 5 {
		repo := fmt.Sprintf("docker.io/library/r%d", r%3)
		if _, err := s.GetBlob(ctx, repo, Digest(fmt.Sprintf("shared-%d", r))); err != nil {
			t.Errorf("shared blob %d in %s: %v", r, repo, err)
		}
	}
	for w := range workers {
		for r := range rounds {
			repo := fmt.Sprintf("docker.io/library/r%d", r%3)
			_, err := s.GetBlob(ctx, repo, Digest(fmt.Sprintf("own-%d-%d", w, r)))
			if r%7 == 6 {
				wantNotFound(t, "GetBlob of a forgotten blob", err)
			} else if err != nil {
				t.Errorf("blob own-%d-%d: %v", w, r, err)
			}
		}
	}
}

func testPing(t *testing.T, s metadata.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Ping(ctx); err == nil {
		t.Errorf("Ping with a cancelled context succeeded")
	}
}
