package oci

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"testing"
)

// chunky returns at most max bytes per Read, and err once the data is gone.
type chunky struct {
	data []byte
	max  int
	err  error
}

func (c *chunky) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := copy(p[:min(len(p), c.max)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func TestOverlapStreamsTheSameBytesAsStream(t *testing.T) {
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	for _, tc := range []struct {
		name  string
		spare int
	}{{"with spare buffers", 2}, {"with none lent", 0}, {"nil overlap", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			var o *Overlap
			if tc.spare >= 0 {
				o = NewOverlap(tc.spare, 4096)
			}
			rec := httptest.NewRecorder()
			written, rerr, werr := o.Stream(rec, &chunky{data: data, max: 3000, err: io.EOF}, make([]byte, 4096))
			if rerr != nil || werr != nil || written != int64(len(data)) {
				t.Fatalf("Stream = %d, %v, %v; want %d bytes", written, rerr, werr, len(data))
			}
			if !bytes.Equal(rec.Body.Bytes(), data) {
				t.Fatal("the streamed bytes differ")
			}
			if o != nil && len(o.spare) != tc.spare {
				t.Fatalf("%d of %d spare buffers returned", len(o.spare), tc.spare)
			}
		})
	}
}

// A read error (a verifying reader withholding the last chunk) is returned after every
// earlier chunk was sent, and nothing of the failed read is.
func TestOverlapStopsAtAReadError(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 10_000)
	broken := errors.New("digest mismatch")
	o := NewOverlap(1, 1024)
	rec := httptest.NewRecorder()
	written, rerr, werr := o.Stream(rec, &chunky{data: data, max: 1000, err: broken}, make([]byte, 1024))
	if !errors.Is(rerr, broken) || werr != nil {
		t.Fatalf("Stream errors = %v, %v; want the read error", rerr, werr)
	}
	if written != int64(len(data)) || rec.Body.Len() != len(data) {
		t.Fatalf("written %d, body %d; want the %d bytes read before the error", written, rec.Body.Len(), len(data))
	}
}

// failingWriter fails its writes after limit bytes.
type failingWriter struct {
	*httptest.ResponseRecorder
	limit int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.Body.Len()+len(p) > w.limit {
		return 0, errors.New("client gone")
	}
	return w.ResponseRecorder.Write(p)
}

func TestOverlapReportsAWriteError(t *testing.T) {
	o := NewOverlap(1, 1024)
	w := &failingWriter{ResponseRecorder: httptest.NewRecorder(), limit: 5000}
	_, rerr, werr := o.Stream(w, &chunky{data: make([]byte, 100_000), max: 1024, err: io.EOF}, make([]byte, 1024))
	if rerr != nil || werr == nil {
		t.Fatalf("Stream errors = %v, %v; want a write error", rerr, werr)
	}
	if len(o.spare) != 1 {
		t.Fatal("the spare buffer was not returned")
	}
}
