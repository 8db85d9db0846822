package oci

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

type failingReader struct{ after string }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after != "" {
		n := copy(p, f.after)
		f.after = f.after[n:]
		return n, nil
	}
	return 0, errors.New("disk on fire")
}

type brokenWriter struct{ *httptest.ResponseRecorder }

func (brokenWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestStreamCopiesEverythingAndFlushes(t *testing.T) {
	w := httptest.NewRecorder()
	n, rerr, werr := Stream(w, strings.NewReader(strings.Repeat("x", 100)), make([]byte, 7))
	if n != 100 || rerr != nil || werr != nil || w.Body.Len() != 100 || !w.Flushed {
		t.Fatalf("Stream = %d, %v, %v (body %d, flushed %v); want 100 bytes flushed", n, rerr, werr, w.Body.Len(), w.Flushed)
	}
}

func TestStreamTellsAFailedSourceFromAGoneClient(t *testing.T) {
	w := httptest.NewRecorder()
	n, rerr, werr := Stream(w, &failingReader{after: "abc"}, make([]byte, 2))
	if n != 3 || rerr == nil || werr != nil {
		t.Fatalf("source failure: Stream = %d, %v, %v; want 3 bytes and a read error", n, rerr, werr)
	}
	_, rerr, werr = Stream(brokenWriter{httptest.NewRecorder()}, strings.NewReader("abc"), make([]byte, 2))
	if rerr != nil || werr == nil {
		t.Fatalf("client failure: Stream = %v, %v; want a write error", rerr, werr)
	}
}
