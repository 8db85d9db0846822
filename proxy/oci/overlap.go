package oci

import (
	"errors"
	"io"
	"net/http"
)

// Overlap lends streams a second copy buffer, so that reading the next chunk (from a store,
// through the verifying hash: the costly half of a warm serve) runs while the previous chunk
// is being written to the client. At most n buffers are lent at once; a stream that finds
// none copies one chunk at a time, as Stream does, so many stalled clients hold at most n
// extra buffers in all.
type Overlap struct {
	size  int
	spare chan []byte
}

// NewOverlap lends at most n buffers of size bytes.
func NewOverlap(n, size int) *Overlap {
	o := &Overlap{size: size, spare: make(chan []byte, n)}
	for range n {
		o.spare <- nil // a token; the buffer is allocated on first use
	}
	return o
}

// take returns a spare buffer, or nil when all are lent.
func (o *Overlap) take() []byte {
	select {
	case b := <-o.spare:
		if b == nil {
			b = make([]byte, o.size)
		}
		return b
	default:
		return nil
	}
}

func (o *Overlap) give(b []byte) { o.spare <- b }

// Stream is Stream with the next read overlapping the current write when a spare buffer is
// free. The results are Stream's. A nil Overlap streams one chunk at a time.
func (o *Overlap) Stream(w http.ResponseWriter, src io.Reader, buf []byte) (written int64, readErr, writeErr error) {
	if o == nil {
		return Stream(w, src, buf)
	}
	rc := http.NewResponseController(w)
	send := func(p []byte) (int, error) {
		m, err := w.Write(p)
		if err != nil {
			return m, err
		}
		if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
			return m, ferr
		}
		return m, nil
	}
	type sent struct {
		n   int
		err error
	}
	done := make(chan sent, 1)
	pending := false
	// finish waits for the write in flight; only one goroutine uses w at a time.
	finish := func() error {
		if !pending {
			return nil
		}
		pending = false
		r := <-done
		written += int64(r.n)
		return r.err
	}
	var spare []byte
	defer func() {
		if spare != nil {
			o.give(spare)
		}
	}()
	cur, other := buf, []byte(nil)
	for {
		n, rerr := src.Read(cur)
		if werr := finish(); werr != nil {
			return written, nil, werr
		}
		if n > 0 {
			if rerr == nil && other == nil {
				if spare = o.take(); spare != nil {
					other = spare
				}
			}
			if rerr == nil && other != nil {
				// Write this chunk in the background and read the next into the other buffer.
				chunk := cur[:n]
				pending = true
				go func() {
					m, err := send(chunk)
					done <- sent{m, err}
				}()
				cur, other = other, cur
			} else {
				m, werr := send(cur[:n])
				written += int64(m)
				if werr != nil {
					return written, nil, werr
				}
			}
		}
		if rerr == io.EOF {
			return written, nil, nil
		}
		if rerr != nil {
			return written, rerr, nil
		}
	}
}
