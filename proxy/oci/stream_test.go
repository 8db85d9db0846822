package oci

import (
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
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

// sender sends itself: n bytes, then err.
type sender struct {
	n   int
	err error
}

func (s sender) Read([]byte) (int, error) { return 0, errors.New("Read called on a sender") }

func (s sender) WriteTo(w io.Writer) (int64, error) {
	n, _ := w.Write([]byte(strings.Repeat("x", s.n)))
	return int64(n), s.err
}

func TestSendLetsASenderSendAndSortsItsFailures(t *testing.T) {
	for _, tc := range []struct {
		name           string
		err            error
		wantRead, want bool // a read error; a write error
	}{
		{"complete", nil, false, false},
		{"the client reset the connection", &net.OpError{Op: "sendfile", Err: syscall.ECONNRESET}, false, true},
		{"a broken pipe", syscall.EPIPE, false, true},
		{"the write deadline", os.ErrDeadlineExceeded, false, true},
		{"the disk failed", &net.OpError{Op: "readfrom", Err: syscall.EIO}, true, false},
		{"the file changed", errors.New("object changed while it was read"), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			n, rerr, werr := Send(w, sender{n: 10, err: tc.err}, func() []byte { t.Fatal("a sender needs no buffer"); return nil })
			if n != 10 || (rerr != nil) != tc.wantRead || (werr != nil) != tc.want || w.Body.Len() != 10 {
				t.Fatalf("Send = %d, %v, %v; want 10 bytes, read error %v, write error %v", n, rerr, werr, tc.wantRead, tc.want)
			}
		})
	}
}
