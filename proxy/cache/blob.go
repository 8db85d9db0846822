package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/metadata"
	"github.com/hubcache/hubcache/proxy/verify"
)

// Blob returns the blob for repo: from the store when it is linked to repo; linked after
// upstream confirms repo has it when the store has it for another repository; otherwise from
// the one upstream fill of this digest, which the caller joins. The returned Blob's bytes may
// still be arriving.
//
// When the metadata store fails, a stored blob is served only after upstream confirms repo has
// it (a free HEAD), so scoping holds without the links. When the blob store fails, the fill
// passes upstream's verified bytes through without caching them.
func (c *Cache) Blob(ctx context.Context, repo Repo, d v1.Hash) (Blob, error) {
	if err := c.checkRegistry(repo); err != nil {
		return nil, err
	}
	// A fill of d for repo is in progress here: join it without asking the stores. The blob
	// cannot be linked to repo yet (the fill links it when it is stored), and a hundred clients
	// pulling one cold image would otherwise each make a metadata query and a blob store stat
	// per blob, all at once, before joining it. The fill is the one joinFill would join.
	if f := c.fillFor(d); f != nil && f.repo == repo {
		c.m.miss(kindBlob)
		return f.wait(ctx)
	}
	b, err := c.cachedBlob(ctx, repo, d)
	if err == nil {
		c.m.hit(kindBlob)
		c.touch(ctx, d)
		return b, nil
	}
	switch store := degradedBy(ctx, err); {
	case store == "metadata":
		c.m.degradedBy(store, kindBlob)
		c.log.Warn("metadata store failed; confirming the blob upstream", "digest", d.String(), "repo", repo.String(), "error", err.Error())
		if size, serr := c.blobs.Stat(ctx, d); serr == nil {
			upSize, herr := c.headBlob(ctx, repo, d)
			if herr != nil {
				return nil, herr
			}
			if upSize == size { // a HEAD without a size confirms nothing: fill instead
				c.m.hit(kindBlob)
				return &storedBlob{c: c, repo: repo, d: d, size: size}, nil
			}
		}
	case store != "":
		c.m.degradedBy(store, kindBlob)
		c.log.Warn("blob store failed; passing the blob through from upstream", "digest", d.String(), "repo", repo.String(), "error", err.Error())
	case !errors.Is(err, errMiss):
		return nil, err
	}
	c.m.miss(kindBlob)
	return c.joinFill(ctx, repo, d)
}

// cachedBlob returns the stored blob when repo may read it (linked, or confirmed upstream and
// linked now); errMiss when it must be filled; a storeError when a store failed.
func (c *Cache) cachedBlob(ctx context.Context, repo Repo, d v1.Hash) (Blob, error) {
	size, err := c.linkedBlob(ctx, repo, d)
	if err == nil {
		return &storedBlob{c: c, repo: repo, d: d, size: size}, nil
	}
	if !errors.Is(err, errMiss) {
		return nil, err
	}
	size, err = c.blobs.Stat(ctx, d)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil, errMiss
	}
	if err != nil {
		return nil, fmt.Errorf("checking blob %s: %w", d, blobErr(err))
	}
	if err := c.confirmAndLink(ctx, repo, d, size); err != nil {
		return nil, err
	}
	return &storedBlob{c: c, repo: repo, d: d, size: size}, nil
}

// joinFill returns the fill of d in progress, or starts one for repo.
func (c *Cache) joinFill(ctx context.Context, repo Repo, d v1.Hash) (Blob, error) {
	for attempt := 0; ; attempt++ {
		f, started, err := c.startOrJoinFill(repo, d)
		if err != nil {
			return nil, err
		}
		if started || f.repo == repo {
			return f.wait(ctx)
		}
		// The fill is for another repository: its bytes are served here only once upstream
		// confirms this repository has the digest too, with the fill's size (a HEAD 200
		// without a size, or with another one, confirms nothing: as for a stored blob).
		upSize, err := c.headBlob(ctx, repo, d)
		if err != nil {
			return nil, err
		}
		b, err := f.wait(ctx)
		if err != nil {
			return nil, err
		}
		if upSize >= 0 && upSize == b.Size() {
			return b, nil
		}
		if attempt > 0 {
			return nil, fmt.Errorf("%w: upstream HEAD of %s in %s gave size %d, the fill from %s has %d",
				ErrUnavailable, d, repo, upSize, f.repo, b.Size())
		}
		// Unconfirmed: this repository gets its own fill, from its own upstream, once the
		// other repository's fill has ended.
		if err := f.ended(ctx); err != nil {
			return nil, err
		}
	}
}

// StatBlob returns the blob's size without fetching its bytes: from the cache when linked,
// else from an upstream HEAD (which also links a blob the store already holds). When a store
// fails, upstream's HEAD answers.
func (c *Cache) StatBlob(ctx context.Context, repo Repo, d v1.Hash) (int64, error) {
	if err := c.checkRegistry(repo); err != nil {
		return 0, err
	}
	size, err := c.linkedBlob(ctx, repo, d)
	if err == nil {
		return size, nil
	}
	if store := degradedBy(ctx, err); store != "" {
		c.m.degradedBy(store, kindBlob)
		return c.headBlob(ctx, repo, d)
	}
	if !errors.Is(err, errMiss) {
		return 0, err
	}
	if f := c.fillFor(d); f != nil && f.repo == repo {
		if b, err := f.wait(ctx); err == nil && b.Size() >= 0 {
			return b.Size(), nil
		}
	}
	if stored, err := c.blobs.Stat(ctx, d); err == nil {
		if err := c.confirmAndLink(ctx, repo, d, stored); err != nil {
			if degradedBy(ctx, err) == "" {
				return 0, err
			}
			c.log.Warn("linking a stored blob failed", "digest", d.String(), "repo", repo.String(), "error", err.Error())
		}
		return stored, nil
	}
	return c.headBlob(ctx, repo, d)
}

// linkedBlob returns the size of a blob linked to repo whose object is present; errMiss
// otherwise. A link whose object is gone (or has the wrong size) is forgotten: heal.
func (c *Cache) linkedBlob(ctx context.Context, repo Repo, d v1.Hash) (int64, error) {
	row, err := c.meta.GetBlob(ctx, repo.String(), d)
	if errors.Is(err, metadata.ErrNotFound) {
		return 0, errMiss
	}
	if err != nil {
		return 0, fmt.Errorf("reading blob %s: %w", d, metaErr(err))
	}
	size, err := c.blobs.Stat(ctx, d)
	if err == nil && size == row.Size {
		return size, nil
	}
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return 0, fmt.Errorf("checking blob %s: %w", d, blobErr(err))
	}
	c.heal(ctx, d, "blob")
	return 0, errMiss
}

func (c *Cache) headBlob(ctx context.Context, repo Repo, d v1.Hash) (int64, error) {
	size, err := c.up.HeadBlob(ctx, repo.Registry, repo.Path, d)
	c.m.upstream("HEAD", kindBlob, err)
	if err != nil {
		return 0, upstreamError(err, kindBlob)
	}
	return size, nil
}

// confirmAndLink links a stored blob to repo once upstream says repo has it with this size.
func (c *Cache) confirmAndLink(ctx context.Context, repo Repo, d v1.Hash, size int64) error {
	upSize, err := c.headBlob(ctx, repo, d)
	if err != nil {
		return err
	}
	if upSize < 0 {
		// A HEAD 200 without a size is not a confirmation (any hostile or broken upstream
		// can send one): the blob is fetched instead, and upstream's bytes are verified.
		return fmt.Errorf("%w: %w: upstream HEAD of %s in %s gave no size", ErrUnavailable, errMiss, d, repo)
	}
	if upSize != size {
		return fmt.Errorf("%w: upstream size %d of %s differs from the stored %d", ErrUnavailable, upSize, d, size)
	}
	if err := c.recordBlob(ctx, repo, d, size); err != nil {
		if degradedBy(ctx, err) == "" {
			return err
		}
		// Upstream confirmed repo has the blob: serving it is safe; the link is made by a
		// later request once the store answers again.
		c.log.Warn("linking a confirmed blob failed; serving it unlinked", "digest", d.String(), "repo", repo.String(), "error", err.Error())
	}
	return nil
}

// storedBlob is a committed blob in the store.
type storedBlob struct {
	c    *Cache
	repo Repo
	d    v1.Hash
	size int64
}

func (b *storedBlob) Digest() v1.Hash { return b.d }
func (b *storedBlob) Size() int64     { return b.size }

func (b *storedBlob) Open(ctx context.Context, offset, length int64) (io.ReadCloser, error) {
	rc, err := b.c.blobs.Open(ctx, b.d, offset, length)
	if err == nil {
		if offset != 0 || (length >= 0 && length != b.size) {
			// A range cannot be verified: the client verifies the blob it assembles.
			return countBytes(rc, b.c.m.servedFromCache), nil
		}
		return b.c.verifiedRead(b.d, b.size, rc), nil
	}
	if ctx.Err() != nil {
		return nil, err
	}
	if errors.Is(err, blobstore.ErrNotFound) {
		// Gone between Stat and Open (evicted, or the bucket lost it): forget it and fill.
		b.c.heal(ctx, b.d, "blob")
	} else {
		b.c.m.degradedBy("blob_store", kindBlob)
		b.c.log.Warn("opening a stored blob failed; passing it through from upstream", "digest", b.d.String(), "error", err.Error())
	}
	if b.repo == (Repo{}) {
		return nil, fmt.Errorf("%w: opening blob %s: %w", ErrUnavailable, b.d, err)
	}
	f, ferr := b.c.joinFill(ctx, b.repo, b.d)
	if ferr != nil {
		return nil, ferr
	}
	return f.Open(ctx, offset, length)
}

// verifiedRead returns a whole read of stored blob d that is hashed as it streams (cut
// before its last byte on a mismatch, the blob then dropped), unless this same unchanged
// object hashed correctly within the verify interval: then it is returned as the store gave
// it, so a file can go to the socket with sendfile.
func (c *Cache) verifiedRead(d v1.Hash, size int64, rc io.ReadCloser) io.ReadCloser {
	var version string
	var changed time.Time
	if v, ok := rc.(blobstore.Versioned); ok {
		version, changed = v.Version()
	}
	if c.verified.fresh(d, version) {
		c.m.trustedReads.Inc()
		// A file changed while it is sent is cut before its end (blobstore.ErrChanged); its
		// new version is not trusted, so the next read is hashed.
		return countBytes(rc, c.m.servedFromCache)
	}
	c.m.hashedReads.Inc()
	vr := verify.NewReader(rc, d, size, func(err error) { c.damagedBlob(d, err) })
	// A version that changed moments before this read began may change again within the
	// same tick of the store's clock without a new version (coarse file times, S3's
	// one-second Last-Modified): it is hashed until it is older than that.
	if time.Since(changed) >= c.verified.racy {
		vr.OnVerified(func() { c.verified.record(d, version) })
	}
	return countBytes(vr, c.m.servedFromCache)
}

// countBytes reports the bytes read from rc to add. A reader that can send itself
// (io.WriterTo: a file, with sendfile) keeps that ability.
func countBytes(rc io.ReadCloser, add func(int)) io.ReadCloser {
	if wt, ok := rc.(io.WriterTo); ok {
		return &countingSender{countingReader: countingReader{rc: rc, add: add}, wt: wt}
	}
	return &countingReader{rc: rc, add: add}
}

// countingReader reports bytes read to a metric.
type countingReader struct {
	rc  io.ReadCloser
	add func(int)
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.add(n)
	return n, err
}

func (r *countingReader) Close() error { return r.rc.Close() }

// countingSender is a countingReader whose reader can send itself.
type countingSender struct {
	countingReader
	wt io.WriterTo
}

func (s *countingSender) WriteTo(w io.Writer) (int64, error) {
	n, err := s.wt.WriteTo(w)
	s.add(int(n))
	return n, err
}
