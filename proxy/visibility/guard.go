package visibility

import (
	"context"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/cache"
)

// Backend is the content interface of the /v2/ handler (proxy/registry.Backend), repeated
// here so this package does not depend on the handler.
type Backend interface {
	Manifest(ctx context.Context, repo cache.Repo, ref string) (cache.Manifest, error)
	Blob(ctx context.Context, repo cache.Repo, d v1.Hash) (cache.Blob, error)
	StatBlob(ctx context.Context, repo cache.Repo, d v1.Hash) (int64, error)
}

// Guard returns next behind the checker: every manifest and blob request, cached or not,
// is refused with ErrPrivate or ErrUnknown unless the repository is served. Nothing is read
// from the cache or from upstream for a refused repository.
func Guard(next Backend, c *Checker) Backend { return guard{next: next, c: c} }

type guard struct {
	next Backend
	c    *Checker
}

func (g guard) Manifest(ctx context.Context, repo cache.Repo, ref string) (cache.Manifest, error) {
	if err := g.c.Authorize(ctx, repo); err != nil {
		return cache.Manifest{}, err
	}
	return g.next.Manifest(ctx, repo, ref)
}

func (g guard) Blob(ctx context.Context, repo cache.Repo, d v1.Hash) (cache.Blob, error) {
	if err := g.c.Authorize(ctx, repo); err != nil {
		return nil, err
	}
	return g.next.Blob(ctx, repo, d)
}

func (g guard) StatBlob(ctx context.Context, repo cache.Repo, d v1.Hash) (int64, error) {
	if err := g.c.Authorize(ctx, repo); err != nil {
		return 0, err
	}
	return g.next.StatBlob(ctx, repo, d)
}
