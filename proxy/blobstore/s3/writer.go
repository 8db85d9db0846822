package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
)

var (
	errCommitted = errors.New("s3 blob store: write already committed")
	errCancelled = errors.New("s3 blob store: write cancelled")
)

// smallBuffer is how large the first part's buffer grows by doubling before it is allocated
// at its full size: small objects (manifests, configs) then cost only their own size.
const smallBuffer = 1 << 20

type writeState int

const (
	writing writeState = iota
	committed
	cancelled
)

// writer streams one object. Bytes collect in a part buffer; a full buffer is uploaded as a
// part in the background while the next one fills, so at most two parts are in memory. An
// object that never fills one part is sent with a single PutObject at Commit.
type writer struct {
	s      *Store
	key    string
	marker string          // PREFIX/uploads/<hex>/<random>: this writer's multipart upload is in progress
	ctx    context.Context // the Create context: part uploads run under it
	stop   context.CancelFunc

	mu        sync.Mutex
	state     writeState
	err       error  // the first failure; Write and Commit return it from then on
	buf       []byte // the part being filled
	spare     []byte // the buffer of the last uploaded part, reused for the next one
	uploadID  string // "" until the first part is full
	markerPut bool
	next      int32 // the number of the next part to upload
	parts     []types.CompletedPart
	inflight  chan partResult // the part being uploaded, nil if none
}

type partResult struct {
	part types.CompletedPart
	buf  []byte
	err  error
}

// Create starts writing the object for d. Nothing is sent until a part is full or Commit.
func (s *Store) Create(ctx context.Context, d v1.Hash) (blobstore.Writer, error) {
	key, err := s.key(d)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("s3 blob store: create %s: %w", key, err)
	}
	wctx, stop := context.WithCancel(ctx)
	return &writer{s: s, key: key, marker: s.markerKey(d.Hex), ctx: wctx, stop: stop, next: 1}, nil
}

// partSize grows every partsPerSize parts so that 10000 parts hold very large objects.
func (w *writer) partSize(n int32) int {
	size := w.s.partSize << ((n - 1) / partsPerSize)
	return int(min(size, MaxPartSize))
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = fmt.Errorf("s3 blob store: write %s: %w", w.key, err)
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		size := w.partSize(w.next)
		k := min(size-len(w.buf), len(p))
		w.grow(size, k)
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		written += k
		if len(w.buf) == size {
			if err := w.sendPart(); err != nil {
				w.err = err
				return written, err
			}
		}
	}
	return written, nil
}

// grow makes room for k more bytes in a buffer that will hold at most size.
func (w *writer) grow(size, k int) {
	need := len(w.buf) + k
	if need <= cap(w.buf) {
		return
	}
	c := max(2*cap(w.buf), need, 64<<10)
	if c > smallBuffer {
		c = size
	}
	b := make([]byte, len(w.buf), min(c, size))
	copy(b, w.buf)
	w.buf = b
}

func (w *writer) usable() error {
	switch {
	case w.state == committed:
		return errCommitted
	case w.state == cancelled:
		return errCancelled
	}
	return w.err
}

// sendPart starts uploading the full buffer as the next part, after the previous part is done.
func (w *writer) sendPart() error {
	if err := w.wait(); err != nil {
		return err
	}
	if w.next > maxParts {
		return fmt.Errorf("s3 blob store: %s: more than %d parts", w.key, maxParts)
	}
	if w.uploadID == "" {
		// The marker comes first, so that an upload is never left without one: some servers
		// (MinIO) list uploads only by exact key, and CleanupAbandoned finds keys by markers.
		_, err := w.s.client.PutObject(w.ctx, &s3.PutObjectInput{
			Bucket:        aws.String(w.s.bucket),
			Key:           aws.String(w.marker),
			Body:          bytes.NewReader(nil),
			ContentLength: aws.Int64(0),
		})
		if err != nil {
			return fmt.Errorf("s3 blob store: write upload marker %s: %w", w.marker, err)
		}
		w.markerPut = true
		out, err := w.s.client.CreateMultipartUpload(w.ctx, &s3.CreateMultipartUploadInput{
			Bucket:      aws.String(w.s.bucket),
			Key:         aws.String(w.key),
			ContentType: aws.String("application/octet-stream"),
		})
		if err != nil {
			return fmt.Errorf("s3 blob store: start upload of %s: %w", w.key, err)
		}
		w.uploadID = aws.ToString(out.UploadId)
	}
	body, n := w.buf, w.next
	w.next++
	w.buf = nil
	if cap(w.spare) >= w.partSize(w.next) {
		w.buf = w.spare[:0]
	}
	w.spare = nil
	ch := make(chan partResult, 1)
	w.inflight = ch
	go func() {
		part, err := w.uploadPart(w.ctx, n, body)
		ch <- partResult{part: part, buf: body, err: err}
	}()
	return nil
}

// wait collects the part being uploaded, if any.
func (w *writer) wait() error {
	if w.inflight == nil {
		return nil
	}
	r := <-w.inflight
	w.inflight = nil
	if r.err != nil {
		return r.err
	}
	w.parts = append(w.parts, r.part)
	w.spare = r.buf
	return nil
}

func (w *writer) uploadPart(ctx context.Context, n int32, body []byte) (types.CompletedPart, error) {
	// A bytes.Reader is seekable and sized: the SDK can sign it and retry it without copying.
	out, err := w.s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:        aws.String(w.s.bucket),
		Key:           aws.String(w.key),
		UploadId:      aws.String(w.uploadID),
		PartNumber:    aws.Int32(n),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		return types.CompletedPart{}, fmt.Errorf("s3 blob store: upload part %d of %s: %w", n, w.key, err)
	}
	return types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)}, nil
}

// Commit sends what is left and completes the upload; only then does the object exist.
func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == committed {
		return nil
	}
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.commit(ctx); err != nil {
		w.err = err
		return err
	}
	w.state = committed
	w.release()
	w.removeMarker(ctx)
	return nil
}

func (w *writer) commit(ctx context.Context) error {
	if err := w.ctx.Err(); err != nil {
		return fmt.Errorf("s3 blob store: commit %s: %w", w.key, err)
	}
	if w.uploadID == "" {
		_, err := w.s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(w.s.bucket),
			Key:           aws.String(w.key),
			Body:          bytes.NewReader(w.buf),
			ContentLength: aws.Int64(int64(len(w.buf))),
			ContentType:   aws.String("application/octet-stream"),
		})
		if err != nil {
			return fmt.Errorf("s3 blob store: put %s: %w", w.key, err)
		}
		return nil
	}
	if err := w.wait(); err != nil {
		return err
	}
	if len(w.buf) > 0 {
		part, err := w.uploadPart(ctx, w.next, w.buf)
		if err != nil {
			return err
		}
		w.parts = append(w.parts, part)
		w.next++
	}
	_, err := w.s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(w.s.bucket),
		Key:             aws.String(w.key),
		UploadId:        aws.String(w.uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	})
	if err != nil {
		return fmt.Errorf("s3 blob store: complete upload of %s: %w", w.key, err)
	}
	return nil
}

// Cancel stops any part in flight and aborts the upload; after Commit it does nothing.
func (w *writer) Cancel(ctx context.Context) error {
	// Stopped before taking the lock, so that a Write waiting for a part upload returns at once.
	// A Commit racing with Cancel then fails, and the upload is aborted below.
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != writing {
		return nil
	}
	w.state = cancelled
	if w.inflight != nil {
		<-w.inflight
		w.inflight = nil
	}
	w.release()
	if w.uploadID == "" {
		w.removeMarker(ctx)
		return nil
	}
	_, err := w.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(w.s.bucket), Key: aws.String(w.key), UploadId: aws.String(w.uploadID),
	})
	if err != nil && !isNoSuchUpload(err) {
		// The object stays invisible, and the marker stays so that CleanupAbandoned finds
		// the upload later.
		return fmt.Errorf("s3 blob store: abort upload of %s: %w", w.key, err)
	}
	w.removeMarker(ctx)
	return nil
}

// removeMarker deletes the writer's upload marker. A failure only delays its removal until
// CleanupAbandoned, so it is logged, not returned.
func (w *writer) removeMarker(ctx context.Context) {
	if !w.markerPut {
		return
	}
	_, err := w.s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.s.bucket), Key: aws.String(w.marker)})
	if err != nil && !isNotFound(err) {
		w.s.logger.WarnContext(ctx, "could not remove an upload marker; CleanupAbandoned will", "key", w.marker, "err", err)
		return
	}
	w.markerPut = false
}

func (w *writer) release() {
	w.stop()
	w.buf, w.spare, w.parts = nil, nil, nil
}
