// Package file is the embedded blob store: content-addressed files under one root directory.
//
//	<root>/blobs/sha256/ab/abcdef…   committed objects, named by their digest
//	<root>/tmp/                     writes in progress, renamed into place on Commit
//
// A rename within one file system is atomic, so a reader sees either no object or the whole
// one. tmp and blobs must therefore live on the same file system (they share the root).
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
)

// DefaultStaleAfter is how old a temporary file must be before New removes it. A write that
// has been open this long belongs to a process that died, not to a slow fill.
const DefaultStaleAfter = time.Hour

// Store keeps objects as files under a root directory.
type Store struct {
	blobs      string
	tmp        string
	logger     *slog.Logger
	staleAfter time.Duration
}

var _ blobstore.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.logger = l } }

// WithStaleAfter sets the age after which New removes leftover temporary files.
func WithStaleAfter(d time.Duration) Option { return func(s *Store) { s.staleAfter = d } }

// New opens (creating if needed) the store under root and removes stale temporary files.
func New(root string, opts ...Option) (*Store, error) {
	if root == "" {
		return nil, errors.New("file blob store: empty root directory")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("file blob store: resolve root %q: %w", root, err)
	}
	s := &Store{
		blobs:      filepath.Join(abs, "blobs", "sha256"),
		tmp:        filepath.Join(abs, "tmp"),
		logger:     slog.Default(),
		staleAfter: DefaultStaleAfter,
	}
	for _, o := range opts {
		o(s)
	}
	for _, dir := range []string{s.blobs, s.tmp} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("file blob store: create %s: %w", dir, err)
		}
	}
	if err := s.removeStale(); err != nil {
		return nil, err
	}
	return s, nil
}

// removeStale deletes temporary files left by writers that never committed or cancelled.
func (s *Store) removeStale() error {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return fmt.Errorf("file blob store: list %s: %w", s.tmp, err)
	}
	cutoff := time.Now().Add(-s.staleAfter)
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		p := filepath.Join(s.tmp, e.Name())
		if err := os.RemoveAll(p); err != nil {
			s.logger.Warn("removing stale temporary blob file", "path", p, "error", err)
			continue
		}
		s.logger.Info("removed stale temporary blob file", "path", p, "modified", info.ModTime())
	}
	return nil
}

// path returns where the object for d lives. It accepts only sha256 digests with 64 lowercase
// hex characters, so no digest can name a path outside the store.
func (s *Store) path(d v1.Hash) (string, error) {
	if !validDigest(d) {
		return "", fmt.Errorf("%w: %q", blobstore.ErrInvalidDigest, d.Algorithm+":"+d.Hex)
	}
	return filepath.Join(s.blobs, d.Hex[:2], d.Hex), nil
}

func validDigest(d v1.Hash) bool {
	if d.Algorithm != "sha256" || len(d.Hex) != 64 {
		return false
	}
	for _, c := range []byte(d.Hex) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Stat returns the size of the committed object for d.
func (s *Store) Stat(ctx context.Context, d v1.Hash) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("stat blob: %w", err)
	}
	p, err := s.path(d)
	if err != nil {
		return 0, err
	}
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("stat blob %s: %w", d, blobstore.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return info.Size(), nil
}

// Open reads length bytes from offset (length < 0: to the end). An offset at the end gives an
// empty reader; an offset past the end is an error.
func (s *Store) Open(ctx context.Context, d v1.Hash, offset, length int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	p, err := s.path(d)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("open blob %s: negative offset %d", d, offset)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open blob %s: %w", d, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	size := info.Size()
	if offset > size {
		f.Close()
		return nil, fmt.Errorf("open blob %s: offset %d beyond size %d", d, offset, size)
	}
	n := size - offset
	if length >= 0 && length < n {
		n = length
	}
	id, changed := version(info)
	return &section{SectionReader: io.NewSectionReader(f, offset, n), f: f, off: offset, n: n, version: id, changed: changed}, nil
}

// tailSize is how much of a range WriteTo holds back and reads into memory before it checks
// that the file did not change while the rest went out.
const tailSize = 64 << 10

// section reads a byte range of an open object file.
type section struct {
	*io.SectionReader
	f       *os.File
	off, n  int64
	version string
	changed time.Time
}

func (s *section) Close() error { return s.f.Close() }

// Version names the file read, taken from the open descriptor, so a rename racing with Open
// cannot mix up two files.
func (s *section) Version() (string, time.Time) { return s.version, s.changed }

// WriteTo sends the rest of the range to w. When w ends at a TCP connection
// (http.ResponseWriter and its wrappers pass io.ReaderFrom through), the kernel copies the
// file to the socket with sendfile: no user-space buffer and no copy.
//
// sendfile copies whatever the file holds while it sends, and nothing hashes those bytes. So
// the last tailSize bytes are held back: they are read into memory, then the file's version is
// taken again from the descriptor, and they are sent only if it is the version Open saw. A
// file written while it was being sent fails with blobstore.ErrChanged before the response is
// complete; a write after that check changed nothing that was sent.
func (s *section) WriteTo(w io.Writer) (int64, error) {
	pos, err := s.SectionReader.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	rest := s.n - pos
	tail := min(rest, tailSize)
	if _, err := s.f.Seek(s.off+pos, io.SeekStart); err != nil {
		return 0, fmt.Errorf("seek blob file: %w", err)
	}
	// A bare *io.LimitedReader over the *os.File is the shape the net package hands to
	// sendfile; it has no WriteTo of its own, so io.Copy asks w to ReadFrom it.
	n, err := io.Copy(w, &io.LimitedReader{R: s.f, N: rest - tail})
	if err == nil && n == rest-tail && tail > 0 {
		var m int
		m, err = s.sendTail(w, s.off+pos+n, tail)
		n += int64(m)
	}
	if _, serr := s.SectionReader.Seek(pos+n, io.SeekStart); serr != nil && err == nil {
		err = serr
	}
	return n, err
}

// sendTail reads the n bytes at off, checks the file is unchanged, and writes them to w.
func (s *section) sendTail(w io.Writer, off, n int64) (int, error) {
	buf := make([]byte, n)
	got, err := s.f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read blob file: %w", err)
	}
	if s.version != "" {
		info, err := s.f.Stat()
		if err != nil {
			return 0, fmt.Errorf("stat blob file: %w", err)
		}
		if id, _ := version(info); id != s.version {
			return 0, fmt.Errorf("%w: %s", blobstore.ErrChanged, s.f.Name())
		}
	}
	return w.Write(buf[:got])
}

// Create starts a write into a temporary file. The context bounds the whole write: once it is
// cancelled, Write and Commit fail.
func (s *Store) Create(ctx context.Context, d v1.Hash) (blobstore.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("create blob: %w", err)
	}
	final, err := s.path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.tmp, d.Hex[:16]+"-*")
	if err != nil {
		return nil, fmt.Errorf("create blob %s: %w", d, err)
	}
	return &writer{ctx: ctx, digest: d, f: f, tmp: f.Name(), final: final}, nil
}

// Delete removes the object for d; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, d v1.Hash) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete blob: %w", err)
	}
	p, err := s.path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// writer streams into one goroutine's temporary file: Write, Commit and Cancel are not safe
// for concurrent use, ReadBack is (clients of a fill call it while the fill writes).
type writer struct {
	ctx    context.Context
	digest v1.Hash
	f      *os.File // nil once committed or cancelled
	tmp    string
	final  string
	err    error // first write error; the write cannot be committed after one

	// mu orders ReadBack with the end of the write: the file is opened by the name it has
	// at that moment (tmp while writing, final once committed), never after it is removed.
	mu    sync.Mutex
	state writerState
}

type writerState int

const (
	writing writerState = iota
	committed
	discarded // cancelled, or a failed commit removed the file
)

var (
	_ blobstore.ReadBacker = (*writer)(nil)

	errFinished  = errors.New("blob writer already committed or cancelled")
	errDiscarded = errors.New("blob write was cancelled")
)

// ReadBack opens the temporary file read-only (the committed object once the write is
// committed). The handle shares the file's pages with the writer: what Write returned is
// readable through it, and it stays readable after a rename or a removal until it is closed.
func (w *writer) ReadBack() (blobstore.ReadAtCloser, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var name string
	switch w.state {
	case writing:
		name = w.tmp
	case committed:
		name = w.final
	default:
		return nil, fmt.Errorf("read back blob %s: %w", w.digest, errDiscarded)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read back blob %s: %w", w.digest, err)
	}
	return f, nil
}

// end sets the final state and, for a discarded write, removes the temporary file, under mu.
func (w *writer) end(state writerState) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state = state
	if state == discarded {
		if err := os.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (w *writer) Write(p []byte) (int, error) {
	if w.f == nil {
		return 0, errFinished
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = fmt.Errorf("write blob %s: %w", w.digest, err)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	if err != nil {
		w.err = fmt.Errorf("write blob %s: %w", w.digest, err)
	}
	return n, w.err
}

// Commit flushes the temporary file to disk and renames it into place. If another writer
// committed the same digest first, the rename replaces identical content, which is harmless.
func (w *writer) Commit(ctx context.Context) error {
	if w.f == nil {
		return errFinished
	}
	if w.err != nil {
		return w.err
	}
	if err := errors.Join(ctx.Err(), w.ctx.Err()); err != nil {
		return fmt.Errorf("commit blob %s: %w", w.digest, err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit blob %s: sync: %w", w.digest, err)
	}
	if err := w.f.Close(); err != nil {
		w.f = nil
		_ = w.end(discarded)
		return fmt.Errorf("commit blob %s: close: %w", w.digest, err)
	}
	w.f = nil
	dir := filepath.Dir(w.final)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		_ = w.end(discarded)
		return fmt.Errorf("commit blob %s: %w", w.digest, err)
	}
	if err := w.rename(); err != nil {
		return fmt.Errorf("commit blob %s: %w", w.digest, err)
	}
	// Persist the directory entry so a crash after Commit does not lose the object while
	// metadata (written next) says it exists.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("commit blob %s: sync directory: %w", w.digest, err)
	}
	return nil
}

// rename moves the temporary file into place under mu, so ReadBack opens one name or the
// other, never a name that just went away.
func (w *writer) rename() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := os.Rename(w.tmp, w.final); err != nil {
		w.state = discarded
		_ = os.Remove(w.tmp)
		return err
	}
	w.state = committed
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Cancel removes the temporary file; after Commit it does nothing.
func (w *writer) Cancel(context.Context) error {
	if w.f == nil {
		return nil
	}
	closeErr := w.f.Close()
	w.f = nil
	if err := w.end(discarded); err != nil {
		return fmt.Errorf("cancel blob %s: %w", w.digest, err)
	}
	if closeErr != nil && !errors.Is(closeErr, os.ErrClosed) {
		return fmt.Errorf("cancel blob %s: %w", w.digest, closeErr)
	}
	return nil
}
