package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/evict"
	"github.com/hubcache/hubcache/proxy/metadata"
)

// DefaultTouchInterval is how often one process records an access of one digest: an object
// touched a minute ago is far from the least recently used end of any sensible budget.
const DefaultTouchInterval = time.Minute

// touchTimeout bounds one access record, so that a slow database does not slow hits down.
const touchTimeout = 2 * time.Second

// toucher rate-limits access records per digest.
type toucher struct {
	mu    sync.Mutex
	every time.Duration
	last  map[v1.Hash]time.Time
}

// due reports whether d should be touched now, and if so remembers that it was.
func (t *toucher) due(d v1.Hash, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if at, ok := t.last[d]; ok && now.Sub(at) < t.every {
		return false
	}
	if len(t.last) >= 100_000 {
		// Bound the memory: entries older than the interval are no longer needed.
		for k, at := range t.last {
			if now.Sub(at) >= t.every {
				delete(t.last, k)
			}
		}
	}
	t.last[d] = now
	return true
}

// touch records a hit for eviction (when the metadata store supports it). Failures are
// logged only: an access record is advice to the evictor, never a reason to fail a pull.
func (c *Cache) touch(ctx context.Context, d v1.Hash) {
	if c.ev == nil || !c.touches.due(d, c.opts.now()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), touchTimeout)
	defer cancel()
	if err := c.ev.Touch(ctx, d, c.opts.now()); err != nil {
		c.log.Debug("recording an access failed", "digest", d.String(), "error", err.Error())
	}
}

// recordBlob links a committed (or found) blob to repo, then makes the eviction check that
// keeps "no row without its object" (evict.CheckRecorded).
func (c *Cache) recordBlob(ctx context.Context, repo Repo, d v1.Hash, size int64) error {
	if err := c.meta.PutBlob(ctx, repo.String(), metadata.Blob{Digest: d, Size: size}); err != nil {
		return fmt.Errorf("linking blob %s: %w", d, metaErr(err))
	}
	return c.checkRecorded(ctx, d)
}

// recordManifest links a committed (or found) manifest to repo, records what it references
// (eviction protects the children of recent manifests) and makes the eviction check.
func (c *Cache) recordManifest(ctx context.Context, repo Repo, m Manifest) error {
	row := metadata.Manifest{Digest: m.Digest, MediaType: m.MediaType, Size: int64(len(m.Body))}
	if err := c.meta.PutManifest(ctx, repo.String(), row); err != nil {
		return fmt.Errorf("recording manifest %s: %w", m.Digest, metaErr(err))
	}
	if c.ev != nil {
		if err := c.ev.SetReferences(ctx, m.Digest, references(m.Body)); err != nil {
			return fmt.Errorf("recording references of %s: %w", m.Digest, metaErr(err))
		}
	}
	return c.checkRecorded(ctx, m.Digest)
}

func (c *Cache) checkRecorded(ctx context.Context, d v1.Hash) error {
	err := evict.CheckRecorded(ctx, c.blobs, forgetter{c.meta}, d)
	if errors.Is(err, evict.ErrEvictedDuringFill) {
		// The bytes in hand are verified and still served; the next pull refetches.
		c.log.Info("object evicted while it was recorded; forgotten", "digest", d.String())
		return nil
	}
	if err != nil {
		// A failed Forget is already marked a metadata failure; anything else is the blob
		// store's Stat failing. Either way it is a store failure, so that callers answer in a
		// degraded mode instead of failing the request (a store going down between the write
		// of a row and this check must not turn a servable pull into a 500).
		return blobErr(err)
	}
	return nil
}

// forgetter marks the metadata store's failures to forget as metadata failures.
type forgetter struct{ meta evict.Forgetter }

func (f forgetter) Forget(ctx context.Context, d v1.Hash) error {
	if err := f.meta.Forget(ctx, d); err != nil {
		return metaErr(err)
	}
	return nil
}

// references lists what a manifest points at: an index's manifests, or an image manifest's
// config and layers. Anything else (or unparsable JSON, which verification already allowed
// as upstream's verbatim bytes) references nothing.
func references(body []byte) []v1.Hash {
	var m struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
		Config *struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil
	}
	var raw []string
	for _, x := range m.Manifests {
		raw = append(raw, x.Digest)
	}
	if m.Config != nil {
		raw = append(raw, m.Config.Digest)
	}
	for _, x := range m.Layers {
		raw = append(raw, x.Digest)
	}
	seen := map[v1.Hash]bool{}
	var out []v1.Hash
	for _, s := range raw {
		h, err := v1.NewHash(s)
		if err != nil || seen[h] {
			continue
		}
		seen[h] = true
		out = append(out, h)
	}
	return out
}

// storeError marks a failure of one of the stores (not "not found"): the cache then answers
// in a degraded mode instead of failing the request (see docs/operations.md).
type storeError struct {
	store string // "metadata" or "blob_store"
	err   error
}

func (e *storeError) Error() string { return e.store + ": " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

func metaErr(err error) error {
	var se *storeError
	if errors.As(err, &se) {
		return err
	}
	return &storeError{store: "metadata", err: err}
}

func blobErr(err error) error {
	var se *storeError
	if errors.As(err, &se) {
		return err
	}
	return &storeError{store: "blob_store", err: err}
}

// degradedBy returns the store whose failure err reports, or "" (then err is an ordinary
// error). A request whose own context ended is not degraded: it is over.
func degradedBy(ctx context.Context, err error) string {
	var se *storeError
	if ctx.Err() != nil || !errors.As(err, &se) {
		return ""
	}
	return se.store
}

// passThroughGrace is how long the spool of a fill that could not be stored stays readable
// for clients that joined it just before it ended.
const passThroughGrace = time.Minute

// fillWriter is a fill's blob store writer that turns store failures into pass-through: the
// fill goes on streaming upstream's verified bytes to its clients and commits nothing.
type fillWriter struct {
	c *Cache
	d v1.Hash
	w blobstore.Writer // nil once the store failed (or after the commit)
}

func (c *Cache) createForFill(ctx context.Context, d v1.Hash) *fillWriter {
	w, err := c.blobs.Create(ctx, d)
	if err != nil {
		c.passThrough(d, "create", err)
		return &fillWriter{c: c, d: d}
	}
	return &fillWriter{c: c, d: d, w: w}
}

func (w *fillWriter) write(ctx context.Context, p []byte) {
	if w.w == nil {
		return
	}
	if _, err := w.w.Write(p); err != nil {
		w.c.passThrough(w.d, "write", err)
		_ = w.w.Cancel(context.WithoutCancel(ctx))
		w.w = nil
	}
}

// commit makes the object visible; false when nothing was stored.
func (w *fillWriter) commit(ctx context.Context) bool {
	if w.w == nil {
		return false
	}
	if err := w.w.Commit(ctx); err != nil {
		w.c.passThrough(w.d, "commit", err)
		_ = w.w.Cancel(context.WithoutCancel(ctx))
		w.w = nil
		return false
	}
	w.w = nil
	return true
}

func (w *fillWriter) cancel(ctx context.Context) {
	if w.w != nil {
		_ = w.w.Cancel(ctx)
	}
}

func (c *Cache) passThrough(d v1.Hash, step string, err error) {
	c.m.degradedBy("blob_store", kindBlob)
	c.log.Warn("blob store failed; passing the blob through without caching", "digest", d.String(), "step", step, "error", err.Error())
}
