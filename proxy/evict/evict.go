// Package evict keeps the cache under a size budget: it removes the least recently used
// objects, never one referenced by a manifest pulled within the retention period, and
// removes the metadata row before the object so that no row is left pointing at bytes the
// evictor deleted. Many replicas may run it against one database and one bucket at once.
package evict

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/metadata"
)

// Defaults for the options.
const (
	DefaultRetention = 7 * 24 * time.Hour
	DefaultInterval  = time.Minute
	DefaultBatchSize = 100
)

// Locker is an optional capability (of the metadata store, or given with WithLocker) that
// lets one evictor at a time run a pass across replicas. Eviction is correct without it;
// the lock only keeps several replicas from each freeing the whole excess at once.
type Locker interface {
	// TryEvictionLock takes the lock if it is free. ok is false when another evictor holds
	// it; release must be called when ok is true.
	TryEvictionLock(ctx context.Context) (release func(), ok bool, err error)
}

// Result describes one pass.
type Result struct {
	// Skipped is true when another evictor held the lock; nothing else is set then.
	Skipped bool
	// SizeBefore and SizeAfter are the recorded total sizes at the start and end of the pass.
	SizeBefore, SizeAfter int64
	// Objects and Bytes count what this pass removed (another replica's removals are not
	// counted here).
	Objects int
	Bytes   int64
	// OverBudget is true when the pass ended over budget because nothing more may be evicted:
	// everything left is recent or referenced by a recent manifest.
	OverBudget bool
}

// Evictor removes least recently used objects while the cache is over budget.
type Evictor struct {
	blobs   blobstore.Store
	meta    metadata.Evictor
	maxSize int64
	opts    options
	m       *metrics

	// mu keeps passes of this process from overlapping (Run's ticker and a manual Once).
	mu sync.Mutex
}

type options struct {
	retention time.Duration
	interval  time.Duration
	batchSize int
	now       func() time.Time
	logger    *slog.Logger
	registry  prometheus.Registerer
	locker    Locker
}

// Option configures an Evictor.
type Option func(*options)

// WithRetention protects every manifest accessed within d, and all it references (default
// 7 days).
func WithRetention(d time.Duration) Option { return func(o *options) { o.retention = d } }

// WithInterval sets how often Run starts a pass (default 1 minute).
func WithInterval(d time.Duration) Option { return func(o *options) { o.interval = d } }

// WithBatchSize sets how many candidates one query returns (default 100).
func WithBatchSize(n int) Option { return func(o *options) { o.batchSize = n } }

// WithClock sets the clock the retention is measured with (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer registers the metrics there (default: a private registry, so nothing is
// exported).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registry = r } }

// WithLocker makes passes take l first. Without it, the metadata store is used when it
// implements Locker; otherwise passes of several replicas may overlap, which is safe.
func WithLocker(l Locker) Option { return func(o *options) { o.locker = l } }

// New returns an evictor that keeps the recorded size of meta's objects at or under maxSize
// bytes (0 evicts everything that is not protected). Metrics that cannot be registered (a
// duplicate registration) are logged and left out.
func New(blobs blobstore.Store, meta metadata.Evictor, maxSize int64, opts ...Option) *Evictor {
	o := options{
		retention: DefaultRetention,
		interval:  DefaultInterval,
		batchSize: DefaultBatchSize,
		now:       time.Now,
		logger:    slog.Default(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
	}
	if o.locker == nil {
		if l, ok := meta.(Locker); ok {
			o.locker = l
		}
	}
	if o.batchSize < 1 {
		o.batchSize = DefaultBatchSize
	}
	if o.interval <= 0 {
		o.interval = DefaultInterval
	}
	maxSize = max(maxSize, 0)
	m, err := newMetrics(o.registry, maxSize)
	if err != nil {
		o.logger.Warn("eviction metrics not registered", "error", err.Error())
	}
	return &Evictor{blobs: blobs, meta: meta, maxSize: maxSize, opts: o, m: m}
}

// Run starts a pass at once and then every interval until ctx ends. A failed pass is logged
// and counted; the next one runs as planned.
func (e *Evictor) Run(ctx context.Context) {
	t := time.NewTicker(e.opts.interval)
	defer t.Stop()
	for {
		if _, err := e.Once(ctx); err != nil && ctx.Err() == nil {
			e.opts.logger.Warn("eviction pass failed", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once runs one pass: while the recorded size is over budget, it evicts the least recently
// used unprotected objects. Per-object failures do not stop the pass; they are returned
// joined at the end. A metadata failure to list or measure stops it.
func (e *Evictor) Once(ctx context.Context) (Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.pass(ctx)
	e.m.observe(res, err)
	if err == nil && !res.Skipped && (res.Objects > 0 || res.OverBudget) {
		e.opts.logger.Info("eviction pass", "objects", res.Objects, "bytes", res.Bytes,
			"size_before", res.SizeBefore, "size_after", res.SizeAfter, "max_size", e.maxSize,
			"over_budget", res.OverBudget)
	}
	return res, err
}

func (e *Evictor) pass(ctx context.Context) (Result, error) {
	var res Result
	if e.opts.locker != nil {
		release, ok, err := e.opts.locker.TryEvictionLock(ctx)
		if err != nil {
			return res, fmt.Errorf("eviction lock: %w", err)
		}
		if !ok {
			return Result{Skipped: true}, nil
		}
		defer release()
	}
	protectSince := e.opts.now().Add(-e.opts.retention)
	total, err := e.meta.TotalSize(ctx)
	if err != nil {
		return res, err
	}
	res.SizeBefore, res.SizeAfter = total, total
	var errs []error
	for total > e.maxSize {
		cands, err := e.meta.EvictionCandidates(ctx, protectSince, e.opts.batchSize)
		if err != nil {
			return res, errors.Join(append(errs, err)...)
		}
		if len(cands) == 0 {
			res.OverBudget = true
			break
		}
		// Free the excess measured at the start of the batch, then measure again: other
		// replicas evict and fills add meanwhile.
		excess, freed, progressed := total-e.maxSize, int64(0), false
		for _, c := range cands {
			if freed >= excess {
				break
			}
			removed, err := e.evict(ctx, c, protectSince)
			if err != nil {
				errs = append(errs, err)
				e.opts.logger.Warn("evicting an object failed", "digest", c.Digest.String(), "error", err.Error())
			}
			if removed {
				progressed = true
				freed += c.Size
				res.Objects++
				res.Bytes += c.Size
				e.m.evicted(c)
			}
		}
		if total, err = e.meta.TotalSize(ctx); err != nil {
			return res, errors.Join(append(errs, err)...)
		}
		res.SizeAfter = total
		if !progressed {
			// Every candidate was used, protected or taken by another evictor since it was
			// listed, or failed: leave the rest to the next pass rather than spin.
			res.OverBudget = total > e.maxSize
			break
		}
	}
	e.m.size(res.SizeAfter)
	return res, errors.Join(errs...)
}

// evict removes one candidate: its metadata first, then its object. removed reports whether
// this evictor removed the metadata (the object may still be left behind when err != nil,
// unreferenced: a later fill overwrites or reuses it).
//
// Why this order cannot leave a row pointing at a missing object for good (see
// docs/storage.md, "Eviction"): ForgetIfUnused removes the row only if nobody used the
// digest since it was listed, so a fill that recorded it before stops the eviction. A fill
// that records it after ForgetIfUnused may have its object deleted below; then either this
// evictor sees the new row in recheck, or the fill, which checks its object after recording
// it (RecordedOrForget), sees the object gone. One of the two removes the row.
func (e *Evictor) evict(ctx context.Context, c metadata.Candidate, protectSince time.Time) (removed bool, err error) {
	// Any access after the listing (a Touch or a Put with a later time) keeps the object.
	usedSince := c.LastAccess.Add(time.Microsecond)
	removed, err = e.meta.ForgetIfUnused(ctx, c.Digest, usedSince, protectSince)
	if err != nil || !removed {
		return false, err
	}
	if err := e.blobs.Delete(ctx, c.Digest); err != nil {
		return true, fmt.Errorf("deleting evicted object %s: %w", c.Digest, err)
	}
	if err := e.recheck(ctx, c.Digest); err != nil {
		return true, err
	}
	return true, nil
}

// recheck handles a fill that recorded d again between ForgetIfUnused and Delete: the
// object it recorded may be the one just deleted. If the row is back and the object is
// gone, the row goes too (the next pull refetches); if the object is there, the fill
// committed after the delete and all is well.
func (e *Evictor) recheck(ctx context.Context, d v1.Hash) error {
	if _, err := e.meta.LastAccess(ctx, d); errors.Is(err, metadata.ErrNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("rechecking evicted %s: %w", d, err)
	}
	_, err := e.blobs.Stat(ctx, d)
	if err == nil {
		return nil
	}
	if !errors.Is(err, blobstore.ErrNotFound) {
		return fmt.Errorf("rechecking evicted %s: %w", d, err)
	}
	e.opts.logger.Info("a fill raced the eviction of an object; forgetting its row", "digest", d.String())
	if _, err := forget(ctx, e.meta, d); err != nil {
		return fmt.Errorf("forgetting re-recorded %s: %w", d, err)
	}
	return nil
}

// forget removes every record of d, whatever its use, through the Evictor interface:
// ForgetIfUnused with a time no access reaches forgets unconditionally (nothing was used
// that late, no manifest is protected).
func forget(ctx context.Context, meta metadata.Evictor, d v1.Hash) (bool, error) {
	farFuture := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	return meta.ForgetIfUnused(ctx, d, farFuture, farFuture)
}
