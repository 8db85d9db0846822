package oci

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
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
// stored file, which goes to the socket with sendfile) does so. One system call reads and
// writes there, so its failures are sorted by kind: the connection's (a network error, a
// closed or reset socket, the write deadline) are writeErr, anything else (a disk's EIO, a
// file that changed) readErr. A short send is the caller's to notice from written.
func Send(w http.ResponseWriter, src io.Reader, buf func() []byte) (written int64, readErr, writeErr error) {
	wt, ok := src.(io.WriterTo)
	if !ok {
		return Stream(w, src, buf())
	}
	written, err := wt.WriteTo(w)
	if err != nil && connectionError(err) {
		return written, nil, err
	}
	return written, err, nil
}

// connectionError reports whether err is the connection's. sendfile's failures, the file's
// included, all come wrapped in the same *net.OpError, so the cause decides.
func connectionError(err error) bool {
	for _, conn := range []error{syscall.EPIPE, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.ETIMEDOUT,
		net.ErrClosed, os.ErrDeadlineExceeded, http.ErrHandlerTimeout, io.ErrClosedPipe} {
		if errors.Is(err, conn) {
			return true
		}
	}
	return false
}
