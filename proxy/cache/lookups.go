package cache

import (
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/metadata"
)

// DefaultLookupTTL is how long a warm manifest request trusts a metadata row this process read
// or wrote (a tag's resolution, a manifest's link): a hot tag costs one or two metadata queries
// a second per process instead of one or two per request (docs/bench.md, rows 05 and 06).
//
// What it changes is bounded by it: a tag moved, or a manifest forgotten, by another replica
// is seen here at most this much later. A tag's freshness is still judged by the CheckedAt in
// the row against --tag-ttl, so no tag is served longer after upstream confirmed it than
// before; misses are never remembered (a row another replica writes is seen at once); and the
// slow path that decides to ask upstream always reads the store.
const DefaultLookupTTL = time.Second

// maxLookups bounds each map; when one is full it starts over.
const maxLookups = 1 << 16

type tagLookupKey struct{ registry, path, tag string }

type manifestLookupKey struct {
	registry, path string
	digest         v1.Hash
}

type lookup[T any] struct {
	row T
	at  time.Time
}

// lookups remembers positive metadata answers of the manifest path for ttl of wall time (not
// the cache's clock, which tests and simulations move by hand: this is about load, not about
// tag semantics).
type lookups struct {
	ttl time.Duration

	mu        sync.Mutex
	tags      map[tagLookupKey]lookup[metadata.Tag]
	manifests map[manifestLookupKey]lookup[metadata.Manifest]
}

func newLookups(ttl time.Duration) *lookups {
	return &lookups{
		ttl:       ttl,
		tags:      map[tagLookupKey]lookup[metadata.Tag]{},
		manifests: map[manifestLookupKey]lookup[metadata.Manifest]{},
	}
}

func (l *lookups) tag(repo Repo, tag string) (metadata.Tag, bool) {
	if l.ttl <= 0 {
		return metadata.Tag{}, false
	}
	k := tagLookupKey{repo.Registry, repo.Path, tag}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.tags[k]
	if !ok {
		return metadata.Tag{}, false
	}
	if time.Since(e.at) >= l.ttl {
		delete(l.tags, k)
		return metadata.Tag{}, false
	}
	return e.row, true
}

func (l *lookups) putTag(repo Repo, tag string, t metadata.Tag) {
	if l.ttl <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.tags) >= maxLookups {
		clear(l.tags)
	}
	l.tags[tagLookupKey{repo.Registry, repo.Path, tag}] = lookup[metadata.Tag]{row: t, at: time.Now()}
}

func (l *lookups) manifest(repo Repo, d v1.Hash) (metadata.Manifest, bool) {
	if l.ttl <= 0 {
		return metadata.Manifest{}, false
	}
	k := manifestLookupKey{repo.Registry, repo.Path, d}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.manifests[k]
	if !ok {
		return metadata.Manifest{}, false
	}
	if time.Since(e.at) >= l.ttl {
		delete(l.manifests, k)
		return metadata.Manifest{}, false
	}
	return e.row, true
}

func (l *lookups) putManifest(repo Repo, m metadata.Manifest) {
	if l.ttl <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.manifests) >= maxLookups {
		clear(l.manifests)
	}
	l.manifests[manifestLookupKey{repo.Registry, repo.Path, m.Digest}] = lookup[metadata.Manifest]{row: m, at: time.Now()}
}

// forget drops everything about d, as metadata's Forget does: its links and the tags that
// resolve to it.
func (l *lookups) forget(d v1.Hash) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, e := range l.tags {
		if e.row.Digest == d {
			delete(l.tags, k)
		}
	}
	for k := range l.manifests {
		if k.digest == d {
			delete(l.manifests, k)
		}
	}
}
