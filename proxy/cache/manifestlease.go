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

// Waiting for another replica's manifest fetch: the cache is looked at after
// firstManifestPoll, then at intervals that double up to maxManifestPoll (a fetch usually
// takes tens of milliseconds: a fixed 150 ms made every other replica's clients wait that long
// for a manifest the holder had in 30 ms); and for maxManifestWait at most before fetching
// anyway (a holder that is alive but stuck; a dead holder's lease expires sooner and is taken
// over). A wait of 30 s costs at most about 200 looks per waiting replica and key: one waiter
// per key and replica (the cache shares it between clients).
const (
	firstManifestPoll = 10 * time.Millisecond
	maxManifestPoll   = 150 * time.Millisecond
	maxManifestWait   = 30 * time.Second
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
	poll := firstManifestPoll
	t := time.NewTimer(poll)
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
		poll = min(2*poll, maxManifestPoll)
		t.Reset(poll)
		m, err := cached(ctx)
		if !errors.Is(err, errMiss) {
			return m, err
		}
	}
}
