package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
)

// errFillFailed is what readers of a failed fill get, wrapping the cause.
var errFillFailed = errors.New("blob fill failed")

// fill is the single upstream fetch of one blob digest. The upstream body is teed into a
// sha256 hash, the blob store writer and a local spool file; readers (one per waiting
// client) read the spool as it grows. When the store's writer can be read back (the file
// store: blobstore.ReadBacker), its temporary file is the spool: each chunk is written once.
// The store commit happens only after size and digest check out; readers never get a
// response's last byte before that, so a bad fill always ends in a failed read, never in a
// complete-looking body.
type fill struct {
	c      *Cache
	repo   Repo
	digest v1.Hash

	// started is closed once upstream answered: then size, spool, readBack and startErr are
	// set and never change. Readers read the spool file at spool, or, when readBack is set,
	// the store's temporary file through it (spool is then "").
	started  chan struct{}
	size     int64
	spool    string
	readBack blobstore.ReadBacker

	// discard removes the store's temporary file of a fill that did not commit; run sets it
	// and the fill's goroutine calls it after finish. Only that goroutine touches it.
	discard  func()
	startErr error

	mu      sync.Mutex
	cond    *sync.Cond
	written int64
	done    bool
	err     error
	// stored is set when the verified bytes were committed to the blob store; a fill that
	// passed through (the store failed) keeps its spool a while for late joiners instead.
	stored bool
	// kept is a handle on the store's file of a fill that reads it back, from the digest's
	// check until the commit succeeds; when the commit fails (which removes the file) the
	// clients still to come read it for passThroughGrace, as they would a spool.
	kept *keptFile
	// verified is set once every byte is in and matches the digest: readers may have the last
	// byte then, before the bytes are stored (a sync of the whole file) and recorded.
	verified bool
}

// startOrJoinFill returns the fill in progress for d, or starts one for repo. started
// reports whether this call started it.
func (c *Cache) startOrJoinFill(repo Repo, d v1.Hash) (*fill, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.fills[d]; ok {
		return f, false, nil
	}
	if c.opts.maxFills > 0 && len(c.fills) >= c.opts.maxFills {
		c.m.fillsBusy.Inc()
		return nil, false, fmt.Errorf("%w: %d blob fills in progress, the most allowed", &TooManyRequestsError{RetryAfter: time.Second}, len(c.fills))
	}
	f := &fill{c: c, repo: repo, digest: d, started: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	c.fills[d] = f
	c.wg.Add(1)
	// The fill belongs to the cache, not to the request that started it: a client that
	// leaves does not cancel it; the fill timeout and Close do.
	ctx, cancel := context.WithTimeout(c.base, c.opts.fillTimeout)
	go func() {
		defer c.wg.Done()
		defer cancel()
		err := f.run(ctx)
		f.finish(err)
		if f.discard != nil {
			f.discard()
		}
	}()
	return f, true, nil
}

// fillFor returns the fill in progress for d, or nil.
func (c *Cache) fillFor(d v1.Hash) *fill {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fills[d]
}

// wait blocks until upstream answered (or ctx ends) and returns the fill as a Blob.
func (f *fill) wait(ctx context.Context) (Blob, error) {
	select {
	case <-f.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if f.startErr != nil {
		return nil, f.startErr
	}
	return f, nil
}

// ended blocks until the fill has ended (stored, passed through or failed) or ctx ends.
func (f *fill) ended(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for !f.done {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.cond.Wait()
	}
	return nil
}

func (f *fill) run(ctx context.Context) error {
	c := f.c
	log := c.log.With("digest", f.digest.String(), "repo", f.repo.String())
	body, size, err := c.up.GetBlob(ctx, f.repo.Registry, f.repo.Path, f.digest)
	c.m.upstream("GET", kindBlob, err)
	if err != nil {
		return f.start(-1, "", nil, upstreamError(err, kindBlob))
	}
	defer body.Close()
	w := c.writerFor(ctx, f.digest, body)
	// On every path that does not commit, the store's temporary file is removed once the fill
	// is done (finish): until then a client opening the fill still finds it, after that it
	// learns the fill's result; readers keep their open handles.
	f.discard = func() { w.cancel(context.WithoutCancel(ctx)) }
	// The store's temporary file is the spool when it can be read back; otherwise (S3, a
	// fill another replica stores, a store that failed to create) a spool file is.
	rb := w.readBacker()
	var spool *os.File
	if rb == nil {
		spool, err = os.CreateTemp(c.opts.spoolDir, "fill-*")
		if err != nil {
			return f.start(-1, "", nil, fmt.Errorf("spooling blob %s: %w", f.digest, err))
		}
		defer spool.Close()
		_ = f.start(size, spool.Name(), nil, nil)
	} else {
		_ = f.start(size, "", rb, nil)
	}
	log.Debug("blob fill started", "size", size, "spool", rb == nil)

	h := sha256.New()
	buf := make([]byte, 256<<10)
	var written int64
	verified := false
	// verify checks the bytes in and lets the readers have the last byte. With a known size it
	// runs as soon as that many bytes are in, before upstream's end: a body that ends later (a
	// holder replica ends its stream only once it has stored the blob, proxy/fillcoord) does
	// not hold back the clients of bytes already verified. A body that then fails or sends
	// more still fails the fill (nothing is stored; readers not done yet are cut), as before.
	verify := func() error {
		if size >= 0 && written != size {
			return fmt.Errorf("%w: upstream sent %d of %d bytes of %s", ErrUnavailable, written, size, f.digest)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != f.digest.Hex {
			return fmt.Errorf("%w: upstream bytes have digest sha256:%s, expected %s", ErrUnavailable, got, f.digest)
		}
		verified = true
		f.mu.Lock()
		f.verified = true
		f.cond.Broadcast()
		f.mu.Unlock()
		return nil
	}
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if size >= 0 && written+int64(n) > size {
				return fmt.Errorf("%w: upstream sent more than the announced %d bytes", ErrUnavailable, size)
			}
			if size < 0 && written+int64(n) > c.opts.maxUnknownSize {
				return fmt.Errorf("%w: upstream sent more than %d bytes without a Content-Length", ErrUnavailable, c.opts.maxUnknownSize)
			}
			if spool == nil {
				// The store's file is what the readers read: a store that fails here fails
				// the fill, as a failed spool write does (both live on the same disk).
				if err := w.writeSpool(buf[:n]); err != nil {
					return fmt.Errorf("spooling blob %s: %w", f.digest, err)
				}
			} else {
				w.write(ctx, buf[:n])
				if _, err := spool.Write(buf[:n]); err != nil {
					return fmt.Errorf("spooling blob %s: %w", f.digest, err)
				}
			}
			written += int64(n)
			c.m.fetched(n)
			f.mu.Lock()
			f.written = written
			f.cond.Broadcast()
			f.mu.Unlock()
			// Hashed after the readers were woken: they send the chunk while it is hashed
			// (on another core). The order is safe: no reader gets the last byte before the
			// digest of every byte checks out.
			h.Write(buf[:n])
			if size >= 0 && written == size {
				if err := verify(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("%w: reading blob %s from upstream after %d bytes: %w", ErrUnavailable, f.digest, written, rerr)
		}
	}
	if !verified {
		if err := verify(); err != nil {
			return err
		}
	}
	// From here on the fill cannot fail: storing and recording only log their failures. The
	// clients need not wait for them: the file store syncs the whole file before it commits.
	var kept *keptFile
	if rb != nil {
		// Opened before the commit, which removes the file if it fails: then the clients
		// still to come read this handle.
		if keep, err := rb.ReadBack(); err == nil {
			kept = &keptFile{f: keep, refs: 1}
			f.mu.Lock()
			f.kept = kept
			f.mu.Unlock()
		}
	}
	if !w.commit(ctx) && !c.committedElsewhere(ctx, body, f.digest, written) {
		if kept != nil {
			time.AfterFunc(passThroughGrace, kept.release)
		}
		log.Info("blob passed through without caching", "size", written)
		return nil
	}
	if kept != nil {
		// Readers that took it keep it until they close.
		f.mu.Lock()
		f.kept = nil
		f.mu.Unlock()
		kept.release()
	}
	f.mu.Lock()
	f.stored = true
	f.mu.Unlock()
	if err := c.recordBlob(ctx, f.repo, f.digest, written); err != nil {
		// The object is committed and verified; the next request links it after a HEAD.
		log.Warn("recording blob failed", "error", err.Error())
	}
	log.Info("blob cached", "size", written)
	return nil
}

// start publishes upstream's answer to the waiting clients. A fill that failed to start is
// retired first, so that a client retrying after the error starts a new fill.
func (f *fill) start(size int64, spool string, rb blobstore.ReadBacker, err error) error {
	if err != nil {
		f.retire()
	}
	f.size, f.spool, f.readBack, f.startErr = size, spool, rb, err
	close(f.started)
	return err
}

// retire removes the fill from the in-progress map (if it is still there).
func (f *fill) retire() {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if f.c.fills[f.digest] == f {
		delete(f.c.fills, f.digest)
	}
}

// finish wakes every reader with the result and retires the fill.
func (f *fill) finish(err error) {
	if err != nil && f.startErr == nil {
		f.c.log.Warn("blob fill failed; nothing cached", "digest", f.digest.String(), "repo", f.repo.String(), "error", err.Error())
	}
	// Retire the fill before its readers learn the result: a client that saw this fill fail
	// and retries must start a new fill, not join the failed one.
	f.retire()
	f.mu.Lock()
	f.done, f.err = true, err
	f.cond.Broadcast()
	f.mu.Unlock()
	if f.spool != "" {
		// Readers keep their open handles; new readers go to the store, or, when the bytes
		// were only passed through, to the spool for a while longer.
		if err == nil && !f.stored {
			time.AfterFunc(passThroughGrace, func() { _ = os.Remove(f.spool) })
		} else {
			_ = os.Remove(f.spool)
		}
	}
}

func (f *fill) Digest() v1.Hash { return f.digest }
func (f *fill) Size() int64     { return f.size }

// Open reads length bytes from offset (length < 0: to the end) as they arrive.
func (f *fill) Open(ctx context.Context, offset, length int64) (io.ReadCloser, error) {
	return f.open(ctx, offset, length, false)
}

// open is Open; untilStored holds the end of the stream (not its bytes) until the fill has
// ended, for the replicas that follow this fill (proxy/fillcoord): they get every byte as soon
// as it is verified, and look for the stored object once their stream ends.
func (f *fill) open(ctx context.Context, offset, length int64, untilStored bool) (io.ReadCloser, error) {
	return f.openOrRefill(ctx, offset, length, untilStored, true)
}

// openOrRefill is open; refill allows opening the next fill once when f passed through.
func (f *fill) openOrRefill(ctx context.Context, offset, length int64, untilStored, refill bool) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.done && f.err != nil:
		return nil, fmt.Errorf("%w: %w", errFillFailed, f.err)
	case f.done && f.stored:
		return (&storedBlob{c: f.c, repo: f.repo, d: f.digest, size: f.size}).Open(ctx, offset, length)
	case f.done && f.kept != nil && f.kept.acquire():
		// Passed through: the store's temporary file, which was the spool, is gone; the
		// fill's own handle on it serves late clients for a while.
		return f.newReader(ctx, keptReader{f.kept}, offset, length, untilStored), nil
	case f.done && f.readBack != nil && refill:
		// Passed through, and the file is gone (the clients that read it keep their
		// handles). A late client gets a fill of its own.
		f.mu.Unlock()
		defer f.mu.Lock()
		return f.openNext(ctx, offset, length, untilStored)
	case f.done && f.readBack != nil:
		return nil, fmt.Errorf("%w: the bytes of %s were passed through and are gone", errFillFailed, f.digest)
	}
	// Opened under mu: finish removes a spool file only after it marked the fill done.
	src, err := f.openSpool()
	if err != nil {
		if f.kept != nil && f.kept.acquire() {
			// The commit failed and removed the file a moment ago.
			return f.newReader(ctx, keptReader{f.kept}, offset, length, untilStored), nil
		}
		return nil, err
	}
	return f.newReader(ctx, src, offset, length, untilStored), nil
}

// newReader returns a reader of src for one client's window; the caller holds f.mu.
func (f *fill) newReader(ctx context.Context, src blobstore.ReadAtCloser, offset, length int64, untilStored bool) *fillReader {
	end := int64(-1)
	if length >= 0 {
		end = offset + length
	}
	r := &fillReader{f: f, src: src, ctx: ctx, pos: offset, end: end, untilStored: untilStored}
	// A reader blocked in Wait must notice its client leaving.
	r.stop = context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	return r
}

// keptFile is one handle shared by the late readers of a passed-through fill: it is closed
// when the grace period has ended and the last of them is done.
type keptFile struct {
	mu   sync.Mutex
	f    blobstore.ReadAtCloser
	refs int // the grace period's reference, and one per reader
}

// acquire takes a reference; false once the file is closed.
func (k *keptFile) acquire() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refs == 0 {
		return false
	}
	k.refs++
	return true
}

func (k *keptFile) release() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.refs--; k.refs == 0 {
		_ = k.f.Close()
	}
}

// keptReader is a reader's reference to a keptFile; it reads without a seek offset of its
// own, so the readers share the handle (ReadAt only; it is not an *os.File, so no sendfile).
type keptReader struct{ k *keptFile }

func (r keptReader) ReadAt(p []byte, off int64) (int, error) { return r.k.f.ReadAt(p, off) }
func (r keptReader) Close() error                            { r.k.release(); return nil }

// openNext opens the fill of f's digest that starts after f (f is retired once done). If
// that one too has passed through before it is opened, the client gets an error, not a third.
func (f *fill) openNext(ctx context.Context, offset, length int64, untilStored bool) (io.ReadCloser, error) {
	b, err := f.c.joinFill(ctx, f.repo, f.digest)
	if err != nil {
		return nil, err
	}
	if next, ok := b.(*fill); ok && next != f {
		return next.openOrRefill(ctx, offset, length, untilStored, false)
	}
	return nil, fmt.Errorf("%w: the bytes of %s were passed through and are gone", errFillFailed, f.digest)
}

// openSpool opens what the fill's readers read: its spool file or the store's file.
func (f *fill) openSpool() (blobstore.ReadAtCloser, error) {
	if f.readBack != nil {
		src, err := f.readBack.ReadBack()
		if err != nil {
			return nil, fmt.Errorf("opening the fill of %s: %w", f.digest, err)
		}
		return src, nil
	}
	file, err := os.Open(f.spool)
	if err != nil {
		return nil, fmt.Errorf("opening spool of %s: %w", f.digest, err)
	}
	return file, nil
}

// fillReader reads one client's window [pos, end) of a fill (end < 0: to the end).
type fillReader struct {
	f           *fill
	src         blobstore.ReadAtCloser
	ctx         context.Context
	stop        func() bool
	pos         int64
	end         int64
	untilStored bool
}

func (r *fillReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	limit, err := r.next()
	if err != nil {
		return 0, err
	}
	n := int(min(int64(len(p)), limit-r.pos))
	m, err := r.src.ReadAt(p[:n], r.pos)
	r.pos += int64(m)
	r.f.c.m.servedFromUpstream(m)
	if err == io.EOF && m == n {
		err = nil
	}
	return m, err
}

// WriteTo sends the window to w as its bytes arrive. From a file (the spool, or the store's
// temporary file) to a TCP connection (http.ResponseWriter and its wrappers pass
// io.ReaderFrom through), the kernel copies them with sendfile: the fill's bytes do not pass
// through a user-space buffer on their way to the client. Each call sends what the fill has
// published, then waits for more; it never sends the bytes Read would hold back.
func (r *fillReader) WriteTo(w io.Writer) (int64, error) {
	file, ok := r.src.(*os.File)
	if !ok {
		// Hide WriteTo, or io.Copy would call it again.
		return io.Copy(w, struct{ io.Reader }{r})
	}
	var sent int64
	for {
		limit, err := r.next()
		if err == io.EOF {
			return sent, nil
		}
		if err != nil {
			return sent, err
		}
		if _, err := file.Seek(r.pos, io.SeekStart); err != nil {
			return sent, fmt.Errorf("seeking the fill of %s: %w", r.f.digest, err)
		}
		want := limit - r.pos
		// A bare *io.LimitedReader over the *os.File is the shape the net package hands
		// to sendfile.
		n, err := io.Copy(w, &io.LimitedReader{R: file, N: want})
		r.pos += n
		sent += n
		r.f.c.m.servedFromUpstream(int(n))
		if err != nil {
			return sent, err
		}
		if n < want {
			return sent, fmt.Errorf("the fill of %s: %w after %d bytes", r.f.digest, io.ErrUnexpectedEOF, r.pos)
		}
	}
}

// next waits until the window has bytes at pos that may be sent and returns where they end;
// io.EOF at the window's end once it may be had, the fill's error when it failed, the
// client's when it left.
func (r *fillReader) next() (int64, error) {
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if f.done && f.err != nil {
			return 0, fmt.Errorf("%w: %w", errFillFailed, f.err)
		}
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
		verified := f.done || f.verified
		limit := f.written
		if r.end >= 0 {
			limit = min(limit, r.end)
		}
		if !verified {
			// Hold back the window's last byte (and the blob's) until the digest checks out.
			limit = min(limit, f.written-1)
			if r.end >= 0 {
				limit = min(limit, r.end-1)
			}
		}
		if r.pos < limit {
			return limit, nil
		}
		if verified && (f.done || !r.untilStored) {
			return 0, io.EOF
		}
		f.cond.Wait()
	}
}

func (r *fillReader) Close() error {
	r.stop()
	return r.src.Close()
}
