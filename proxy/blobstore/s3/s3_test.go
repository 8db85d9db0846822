package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
	"github.com/hubcache/hubcache/proxy/blobstore/blobstoretest"
	"github.com/hubcache/hubcache/proxy/blobstore/s3"
	"github.com/hubcache/hubcache/test/s3server"
)

// newStore opens a store on srv under prefix, configured from the contract URL.
func newStore(t *testing.T, srv *s3server.Server, prefix string, opts ...s3.Option) *s3.Store {
	t.Helper()
	cfg, err := s3.ParseURL(srv.URL(prefix))
	if err != nil {
		t.Fatalf("ParseURL(%s): %v", srv.URL(prefix), err)
	}
	return newStoreConfig(t, srv, cfg, opts...)
}

func newStoreConfig(t *testing.T, srv *s3server.Server, cfg s3.Config, opts ...s3.Option) *s3.Store {
	t.Helper()
	opts = append([]s3.Option{s3.WithStaticCredentials(srv.AccessKey, srv.SecretKey)}, opts...)
	st, err := s3.New(t.Context(), cfg, opts...)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg, err)
	}
	return st
}

func TestConformance(t *testing.T) {
	for _, kind := range s3server.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			srv := s3server.Start(t, kind)
			var n atomic.Int64
			blobstoretest.Run(t, func(t *testing.T) blobstore.Store {
				// A fresh prefix is an empty store.
				st := newStore(t, srv, fmt.Sprintf("conformance/%d", n.Add(1)))
				if err := st.Check(t.Context()); err != nil {
					t.Fatalf("Check: %v", err)
				}
				return st
			})
		})
	}
}

// TestMultipartVisibility writes several parts, so the multipart path (not the single PutObject
// of small objects) is the one checked.
func TestMultipartVisibility(t *testing.T) {
	for _, kind := range s3server.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			srv := s3server.Start(t, kind)
			cfg, err := s3.ParseURL(srv.URL("visibility"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.PartSize = s3.MinPartSize
			st := newStoreConfig(t, srv, cfg)
			ctx := t.Context()
			b, d := blobstoretest.Content(1, 2*s3.MinPartSize+12345)

			t.Run("an object is invisible before Commit and exists whole after it", func(t *testing.T) {
				w, err := st.Create(ctx, d)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(b); err != nil {
					t.Fatal(err)
				}
				assertMissing(t, st, d)
				assertNoObjects(t, srv, "visibility/blobs/")
				if got := uploads(t, srv, blobKey("visibility", d)); len(got) != 1 {
					t.Errorf("multipart uploads of %s while writing: %d, want 1", d, len(got))
				}
				if err := w.Commit(ctx); err != nil {
					t.Fatalf("Commit: %v", err)
				}
				assertContent(t, st, d, b)
				assertNoUploads(t, srv, blobKey("visibility", d))
				assertNoObjects(t, srv, "visibility/uploads/")
				if err := st.Delete(ctx, d); err != nil {
					t.Fatal(err)
				}
			})
			t.Run("a cancelled multipart write leaves neither object nor upload", func(t *testing.T) {
				w, err := st.Create(ctx, d)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(b); err != nil {
					t.Fatal(err)
				}
				if err := w.Cancel(ctx); err != nil {
					t.Fatalf("Cancel: %v", err)
				}
				assertMissing(t, st, d)
				assertNoObjects(t, srv, "visibility/")
				assertNoUploads(t, srv, blobKey("visibility", d))
			})
		})
	}
}

func TestCleanupAbandoned(t *testing.T) {
	for _, kind := range s3server.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			srv := s3server.Start(t, kind)
			ctx := t.Context()
			cfg, err := s3.ParseURL(srv.URL("cleanup"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.PartSize = s3.MinPartSize
			st := newStoreConfig(t, srv, cfg)
			b, d := blobstoretest.Content(2, s3.MinPartSize+1)

			// A writer that filled a part and then "died": it neither commits nor cancels.
			w, err := st.Create(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(b); err != nil {
				t.Fatal(err)
			}
			key := blobKey("cleanup", d)
			if got := uploads(t, srv, key); len(got) != 1 {
				t.Fatalf("multipart uploads of %s after a part was written: %d, want 1", key, len(got))
			}
			// Another store sharing the bucket under another prefix is not touched.
			other := newStore(t, srv, "elsewhere", s3.WithClock(func() time.Time { return time.Now().Add(48 * time.Hour) }))
			if n, err := other.CleanupAbandoned(ctx, time.Hour); err != nil || n != 0 {
				t.Errorf("CleanupAbandoned under another prefix = %d, %v; want 0", n, err)
			}

			if n, err := st.CleanupAbandoned(ctx, time.Hour); err != nil || n != 0 {
				t.Errorf("CleanupAbandoned of a fresh upload = %d, %v; want 0 (it may still be filling)", n, err)
			}
			later := newStoreConfig(t, srv, cfg, s3.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))
			if n, err := later.CleanupAbandoned(ctx, time.Hour); err != nil || n != 1 {
				t.Errorf("CleanupAbandoned two hours later = %d, %v; want 1", n, err)
			}
			assertNoUploads(t, srv, key)
			assertNoObjects(t, srv, "cleanup/")
			// The writer was slow, not dead. Its Commit normally fails; a server may also accept
			// it when the abort raced with the part still being uploaded (versitygw recreates
			// the upload then). Either way no partial object may appear.
			if err := w.Commit(ctx); err == nil {
				t.Logf("%s accepted the Commit of an upload aborted while a part was in flight", kind)
				assertContent(t, st, d, b)
			} else {
				if err := w.Cancel(ctx); err != nil {
					t.Errorf("Cancel of an aborted upload: %v", err)
				}
				assertMissing(t, st, d)
			}
			assertNoUploads(t, srv, key)
		})
	}
}

// TestStreamingMemory writes 96 MiB with 8 MiB parts and measures the live heap while the
// bytes flow: it must stay near two parts, far below the object's size.
func TestStreamingMemory(t *testing.T) {
	for _, kind := range s3server.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			srv := s3server.Start(t, kind)
			streamMeasured(t, newStore(t, srv, "memory"))
		})
	}
}

func streamMeasured(t *testing.T, st *s3.Store) {
	ctx := t.Context()
	const size = 96 << 20
	const chunk = 256 << 10
	gen := func() io.Reader { return io.LimitReader(newPattern(3), size) }
	h := sha256.New()
	if _, err := io.Copy(h, gen()); err != nil {
		t.Fatal(err)
	}
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}

	base := liveHeap()
	var peak uint64
	w, err := st.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	r := gen()
	buf := make([]byte, chunk)
	for written := 0; ; {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				_ = w.Cancel(ctx)
				t.Fatalf("Write: %v", err)
			}
			written += n
			if written%(4<<20) == 0 {
				peak = max(peak, liveHeap())
			}
		}
		if rerr != nil {
			break
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	growth := int64(peak) - int64(base)
	t.Logf("peak live heap growth while streaming %d MiB with %d MiB parts: %.1f MiB (baseline %.1f MiB)",
		size>>20, s3.DefaultPartSize>>20, float64(growth)/(1<<20), float64(base)/(1<<20))
	// Two parts plus the SDK's own buffers; a store holding the object would show ~96 MiB.
	if limit := int64(4 * s3.DefaultPartSize); growth > limit {
		t.Errorf("live heap grew by %d MiB while streaming, want at most %d MiB", growth>>20, limit>>20)
	}

	rc, err := st.Open(ctx, d, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rh := sha256.New()
	if n, err := io.Copy(rh, rc); err != nil || n != size {
		t.Fatalf("read back %d bytes, %v; want %d", n, err, size)
	}
	if got := hex.EncodeToString(rh.Sum(nil)); got != d.Hex {
		t.Errorf("read back sha256:%s, want %s", got, d)
	}
}

func TestPresignGet(t *testing.T) {
	for _, kind := range s3server.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			srv := s3server.Start(t, kind)
			st := newStore(t, srv, "presign")
			ctx := t.Context()
			b, d := blobstoretest.Content(4, 5000)
			put(t, st, d, b)

			// The HTTP layer finds the capability by type assertion.
			var store blobstore.Store = st
			p, ok := store.(interface {
				PresignGet(context.Context, v1.Hash, time.Duration) (string, error)
			})
			if !ok {
				t.Fatal("the S3 store does not offer PresignGet")
			}
			u, err := p.PresignGet(ctx, d, 5*time.Minute)
			if err != nil {
				t.Fatalf("PresignGet: %v", err)
			}
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, b) {
				t.Errorf("GET presigned URL: status %d, %d bytes, %v; want 200 with the %d bytes", resp.StatusCode, len(got), err, len(b))
			}
			if _, err := p.PresignGet(ctx, d, 8*24*time.Hour); err == nil {
				t.Errorf("PresignGet with an 8-day validity succeeded, want an error")
			}
		})
	}
}

// TestUnreachable checks that a store can be built while S3 is down (the proxy then passes
// through) and that the failure is an error, not ErrNotFound.
func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := s3.New(ctx, s3.Config{Bucket: "absent", Endpoint: "http://127.0.0.1:1", PathStyle: true},
		s3.WithStaticCredentials("a", "b"))
	if err != nil {
		t.Fatalf("New with an unreachable endpoint: %v", err)
	}
	if err := st.Check(ctx); err == nil {
		t.Errorf("Check of an unreachable endpoint succeeded")
	}
	_, d := blobstoretest.Content(5, 10)
	if _, err := st.Stat(ctx, d); err == nil || errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat on an unreachable endpoint: error = %v, want a non-ErrNotFound error", err)
	}
}

func put(t *testing.T, st blobstore.Store, d v1.Hash, b []byte) {
	t.Helper()
	w, err := st.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func assertMissing(t *testing.T, st blobstore.Store, d v1.Hash) {
	t.Helper()
	if _, err := st.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat(%s) error = %v, want ErrNotFound", d, err)
	}
}

func assertContent(t *testing.T, st blobstore.Store, d v1.Hash, want []byte) {
	t.Helper()
	rc, err := st.Open(t.Context(), d, 0, -1)
	if err != nil {
		t.Fatalf("Open(%s): %v", d, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("content of %s: %d bytes, %v; want the %d bytes written", d, len(got), err, len(want))
	}
}

// assertNoObjects checks the bucket directly: not even a temporary object may show.
func assertNoObjects(t *testing.T, srv *s3server.Server, prefix string) {
	t.Helper()
	out, err := srv.Client().ListObjectsV2(t.Context(), &awss3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	for _, o := range out.Contents {
		t.Errorf("object %s (%d bytes) is visible", aws.ToString(o.Key), aws.ToInt64(o.Size))
	}
}

func uploads(t *testing.T, srv *s3server.Server, prefix string) []string {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: aws.String(srv.Bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

func assertNoUploads(t *testing.T, srv *s3server.Server, prefix string) {
	t.Helper()
	if keys := uploads(t, srv, prefix); len(keys) != 0 {
		t.Errorf("multipart uploads left behind: %s", strings.Join(keys, ", "))
	}
}

// blobKey is the object key of d in a store under prefix (the layout is a documented contract).
func blobKey(prefix string, d v1.Hash) string {
	return prefix + "/blobs/sha256/" + d.Hex[:2] + "/" + d.Hex
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// pattern is an endless deterministic byte stream that holds nothing.
type pattern struct{ x uint64 }

func newPattern(seed uint64) *pattern { return &pattern{x: seed*0x9E3779B97F4A7C15 + 1} }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		p.x ^= p.x << 13
		p.x ^= p.x >> 7
		p.x ^= p.x << 17
		b[i] = byte(p.x)
	}
	return len(b), nil
}
