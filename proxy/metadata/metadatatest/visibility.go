package metadatatest

import (
	"errors"
	"testing"

	"github.com/hubcache/hubcache/proxy/metadata"
)

// testVisibility: the answer about a repository is recorded, replaced, kept per repository,
// and invalid answers are rejected without touching the recorded one.
func testVisibility(t *testing.T, s metadata.Store) {
	ctx := t.Context()
	_, err := s.GetVisibility(ctx, repoA)
	wantNotFound(t, "GetVisibility of an unchecked repository", err)

	first := metadata.RepositoryVisibility{Visibility: metadata.Public, CheckedAt: now()}
	if err := s.PutVisibility(ctx, repoA, first); err != nil {
		t.Fatalf("PutVisibility: %v", err)
	}
	got, err := s.GetVisibility(ctx, repoA)
	if err != nil {
		t.Fatalf("GetVisibility: %v", err)
	}
	if got.Visibility != metadata.Public || !sameInstant(got.CheckedAt, first.CheckedAt) {
		t.Errorf("GetVisibility = %+v, want %+v", got, first)
	}
	_, err = s.GetVisibility(ctx, repoB)
	wantNotFound(t, "GetVisibility of another repository", err)

	second := metadata.RepositoryVisibility{Visibility: metadata.Private, CheckedAt: first.CheckedAt.Add(90_000_000_000)}
	if err := s.PutVisibility(ctx, repoA, second); err != nil {
		t.Fatalf("PutVisibility (replace): %v", err)
	}
	got, err = s.GetVisibility(ctx, repoA)
	if err != nil {
		t.Fatalf("GetVisibility after replace: %v", err)
	}
	if got.Visibility != metadata.Private || !sameInstant(got.CheckedAt, second.CheckedAt) {
		t.Errorf("GetVisibility after replace = %+v, want %+v", got, second)
	}

	for _, bad := range []struct {
		repo string
		v    metadata.RepositoryVisibility
	}{
		{"", metadata.RepositoryVisibility{Visibility: metadata.Public, CheckedAt: now()}},
		{repoA, metadata.RepositoryVisibility{Visibility: "unknown", CheckedAt: now()}},
		{repoA, metadata.RepositoryVisibility{Visibility: metadata.Public}},
	} {
		if err := s.PutVisibility(ctx, bad.repo, bad.v); !errors.Is(err, metadata.ErrInvalid) {
			t.Errorf("PutVisibility(%q, %+v) = %v, want ErrInvalid", bad.repo, bad.v, err)
		}
	}
	got, err = s.GetVisibility(ctx, repoA)
	if err != nil || got.Visibility != metadata.Private {
		t.Errorf("after rejected puts GetVisibility = %+v, %v; want the private answer kept", got, err)
	}
}
