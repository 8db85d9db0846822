// Package verify checks bytes against their digest while they stream, without an extra pass:
// the bytes that would complete a body are held back until the digest checks out, so a
// reader that relays them (and aborts on a read error) never delivers a complete-looking body
// with the wrong bytes.
package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrMismatch is returned by a Reader whose bytes do not match their digest or size.
var ErrMismatch = errors.New("content does not match its digest")

// Reader verifies the sha256 digest of the bytes read through it.
type Reader struct {
	rc       io.ReadCloser
	h        hash.Hash
	want     v1.Hash
	size     int64
	read     int64
	mismatch func(error)
	verified func()
	err      error
}

// NewReader verifies rc against want. size is the expected length, or -1 when unknown: then
// the check happens at EOF, which is reported as an error on a mismatch (the caller must not
// have sent a length, so that the failed read still breaks the body). mismatch, if not nil,
// is called once on a mismatch.
func NewReader(rc io.ReadCloser, want v1.Hash, size int64, mismatch func(error)) *Reader {
	return &Reader{rc: rc, h: sha256.New(), want: want, size: size, mismatch: mismatch}
}

// OnVerified sets fn to be called once, when the bytes have matched the digest (and size);
// it returns r.
func (r *Reader) OnVerified(fn func()) *Reader {
	r.verified = fn
	return r
}

func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.want.Algorithm != "sha256" {
		return 0, r.fail(fmt.Errorf("%w: cannot verify algorithm %q", ErrMismatch, r.want.Algorithm))
	}
	n, err := r.rc.Read(p)
	if n > 0 {
		r.h.Write(p[:n])
		r.read += int64(n)
		if r.size >= 0 && r.read > r.size {
			return 0, r.fail(fmt.Errorf("%w: %s is longer than %d bytes", ErrMismatch, r.want, r.size))
		}
		if r.size >= 0 && r.read == r.size {
			if err := r.check(); err != nil {
				return 0, r.fail(err) // withhold the bytes that would complete the body
			}
		}
	}
	if err == io.EOF {
		if r.size >= 0 && r.read != r.size {
			return n, r.fail(fmt.Errorf("%w: %s ended after %d of %d bytes", ErrMismatch, r.want, r.read, r.size))
		}
		if r.size < 0 {
			if cerr := r.check(); cerr != nil {
				return n, r.fail(cerr)
			}
		}
	}
	return n, err
}

func (r *Reader) check() error {
	if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want.Hex {
		return fmt.Errorf("%w: %s has digest sha256:%s", ErrMismatch, r.want, got)
	}
	if r.verified != nil {
		r.verified()
		r.verified = nil
	}
	return nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	if r.mismatch != nil {
		r.mismatch(err)
	}
	return err
}

// Close closes the underlying reader.
func (r *Reader) Close() error { return r.rc.Close() }
