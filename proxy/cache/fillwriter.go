package cache

import (
	"context"
	"errors"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
)

// passThroughGrace is how long the spool of a fill that could not be stored stays readable
// for clients that joined it just before it ended.
const passThroughGrace = time.Minute

var errFinished = errors.New("the blob store writer was already committed or cancelled")

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

// readBacker returns the store writer when its bytes can be read back while it writes (the
// file store): the fill then needs no spool file of its own.
func (w *fillWriter) readBacker() blobstore.ReadBacker {
	if rb, ok := w.w.(blobstore.ReadBacker); ok {
		return rb
	}
	return nil
}

// writeSpool writes p for a fill whose readers read the store's file: a failure fails the
// fill (the caller's cancel removes the file), it cannot pass through.
func (w *fillWriter) writeSpool(p []byte) error {
	if w.w == nil {
		return errFinished
	}
	_, err := w.w.Write(p)
	return err
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
