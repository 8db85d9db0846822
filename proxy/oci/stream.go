package oci

import (
	"errors"
	"io"
	"net/http"
)

// Stream copies src to w through buf, flushing after every chunk so a waiting client gets
// bytes as soon as they exist (containerd gives up after 30 s without progress). It stops
// at the first failure: readErr when src failed, writeErr when the client did (a failed
// write or flush: the client left). End of src is no error.
func Stream(w http.ResponseWriter, src io.Reader, buf []byte) (written int64, readErr, writeErr error) {
	rc := http.NewResponseController(w)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, nil, werr
			}
			if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return written, nil, ferr
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

// Send copies src to w like Stream, except that a src that can send itself (io.WriterTo: a
// stored file, which goes to the socket with sendfile) does so. Its failures cannot be told
// apart (one system call reads and writes): they are reported as writeErr, and a short send
// is the caller's to notice from written.
func Send(w http.ResponseWriter, src io.Reader, buf func() []byte) (written int64, readErr, writeErr error) {
	if wt, ok := src.(io.WriterTo); ok {
		written, err := wt.WriteTo(w)
		return written, nil, err
	}
	return Stream(w, src, buf())
}
