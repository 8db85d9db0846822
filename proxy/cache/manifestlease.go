package cache

import (
	"context"
	"errors"
	"time"
)

// ManifestLeaser is implemented by upstreams coordinated across replicas (proxy/fillcoord).
// A cold manifest is then fetched from upstream by one replica: Docker Hub counts every
// manifest GET against the pull limit, however small the manifest.
type ManifestLeaser interface {
	// LeaseManifest takes the lease named key ("manifest:<repo>:<tag>" or
	// "manifest:<repo>@<digest>", repo as in Repo.String). release is nil when another
	// replica holds a live lease on it. An error means the lease could not be asked for.
	LeaseManifest(ctx context.Context, key string) (release func(), err error)
}

// Waiting for another replica's manifest fetch: how often the cache is looked at, and for how
// long at most before fetching anyway (a holder that is alive but stuck; a dead holder's
// lease expires sooner and is taken over).
const (
	manifestPoll    = 150 * time.Millisecond
	maxManifestWait = 30 * time.Second
)

// leased runs fetch under the lease key when the upstream is coordinated. While another
// replica holds the lease, it waits for cached (errMiss: not there yet) to find what that
// replica stored. When the holder gives the lease up without storing anything (it failed, or
// died and the lease expired), this replica takes the lease and fetches itself; fetch must
// therefore look at the cache first. A lease is only a saving: without one, fetch runs.
func (c *Cache) leased(ctx context.Context, key string, cached, fetch func(context.Context) (Manifest, error)) (Manifest, error) {
	l, ok := c.leaser()
	if !ok {
		return fetch(ctx)
	}
	deadline := time.Now().Add(maxManifestWait)
	t := time.NewTicker(manifestPoll)
	defer t.Stop()
	for {
		release, err := l.LeaseManifest(ctx, key)
		if err != nil {
			c.log.Warn("manifest lease unavailable; fetching without coordination", "key", key, "error", err.Error())
			return fetch(ctx)
		}
		if release != nil {
			defer release()
			return fetch(ctx)
		}
		if time.Now().After(deadline) {
			c.log.Warn("another replica's manifest fetch takes too long; fetching it here too", "key", key)
			return fetch(ctx)
		}
		select {
		case <-ctx.Done():
			return Manifest{}, ctx.Err()
		case <-t.C:
		}
		m, err := cached(ctx)
		if !errors.Is(err, errMiss) {
			return m, err
		}
	}
}
