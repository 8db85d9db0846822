package fillcoord_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore/file"
	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/fillcoord"
)

// hub is an upstream that serves one blob and counts GETs.
type hub struct {
	cache.Upstream // nil: only the blob methods are used
	blob           []byte
	d              v1.Hash
	// headNoSize answers HEAD 200 without a size, as a broken or hostile upstream may.
	headNoSize bool
	mu         sync.Mutex
	gets       int
}

func newHub(t *testing.T, size int) *hub {
	t.Helper()
	b := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	sum := sha256.Sum256(b)
	return &hub{blob: b, d: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)}}
}

func (h *hub) GetBlob(ctx context.Context, registry, repo string, d v1.Hash) (io.ReadCloser, int64, error) {
	h.mu.Lock()
	h.gets++
	h.mu.Unlock()
	return io.NopCloser(bytes.NewReader(h.blob)), int64(len(h.blob)), nil
}

func (h *hub) HeadBlob(ctx context.Context, registry, repo string, d v1.Hash) (int64, error) {
	if h.headNoSize {
		return -1, nil
	}
	return int64(len(h.blob)), nil
}

func (h *hub) getCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gets
}

// source serves the blob's first failAt bytes and then fails (failAt < 0: the whole blob).
type source struct {
	blob   []byte
	failAt int
}

func (s source) OpenFill(ctx context.Context, d v1.Hash, offset int64) (int64, io.ReadCloser, error) {
	end := len(s.blob)
	var tail io.Reader = strings.NewReader("")
	if s.failAt >= 0 {
		end = s.failAt
		tail = errReader{}
	}
	if offset > int64(end) {
		return 0, nil, cache.ErrNoFill
	}
	return int64(len(s.blob)), io.NopCloser(io.MultiReader(bytes.NewReader(s.blob[offset:end]), tail)), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("holder died") }

// replica is a coordinator whose fill endpoint serves src.
func replica(t *testing.T, dsn, name string, src fillcoord.Source, secret string) *fillcoord.Coordinator {
	t.Helper()
	srv := httptest.NewServer(fillcoord.Handler(src, secret, slog.Default()))
	t.Cleanup(srv.Close)
	c, err := fillcoord.New(t.Context(), dsn, name, strings.TrimPrefix(srv.URL, "http://"), fillcoord.WithTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func readAll(t *testing.T, up *fillcoord.Upstream, d v1.Hash) []byte {
	t.Helper()
	rc, _, err := up.GetBlob(t.Context(), "docker.io", "library/x", d)
	if err != nil {
		t.Fatalf("GetBlob: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return b
}

func TestAFollowerStreamsFromTheHolderAndTakesOverWhenTheHolderBreaks(t *testing.T) {
	cases := []struct {
		name        string
		failAt      int  // where the holder's stream breaks (-1: never)
		holderLives bool // the holder keeps renewing its lease after the break
		followerKey string
		headNoSize  bool
		wantHubGets int
	}{
		{name: "the holder serves every byte", failAt: -1, followerKey: "s3cret", wantHubGets: 0},
		{name: "the holder dies mid-stream and the follower finishes from upstream", failAt: 5000, followerKey: "s3cret", wantHubGets: 1},
		{name: "a follower with the wrong secret fetches from upstream itself", failAt: -1, holderLives: true, followerKey: "wrong", wantHubGets: 1},
		{name: "a HEAD without a size makes the follower fetch its repository's own bytes", failAt: -1, holderLives: true, followerKey: "s3cret", headNoSize: true, wantHubGets: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn := freshSchema(t)
			h := newHub(t, 64<<10)
			h.headNoSize = tc.headNoSize
			holder := replica(t, dsn, "holder", source{blob: h.blob, failAt: tc.failAt}, "s3cret")
			follower := replica(t, dsn, "follower", source{blob: h.blob, failAt: -1}, tc.followerKey)
			release, _, err := holder.Acquire(t.Context(), h.d.String())
			if err != nil || release == nil {
				t.Fatalf("holder could not take the lease: %v", err)
			}
			if !tc.holderLives && tc.failAt >= 0 {
				// The holder "dies": nobody renews, the lease expires.
				holder.Close()
			} else {
				defer release()
			}
			up := fillcoord.NewUpstream(h, follower, tc.followerKey, nil)
			got := readAll(t, up, h.d)
			if !bytes.Equal(got, h.blob) {
				t.Fatalf("follower read %d bytes that differ from the blob's %d", len(got), len(h.blob))
			}
			if n := h.getCount(); n != tc.wantHubGets {
				t.Errorf("upstream saw %d GETs, want %d", n, tc.wantHubGets)
			}
		})
	}
}

func TestTheHolderFetchesFromUpstreamAndReleasesTheLeaseWhenDone(t *testing.T) {
	dsn := freshSchema(t)
	h := newHub(t, 4096)
	a := replica(t, dsn, "a", source{blob: h.blob, failAt: -1}, "k")
	b := replica(t, dsn, "b", source{blob: h.blob, failAt: -1}, "k")
	if got := readAll(t, fillcoord.NewUpstream(h, a, "k", nil), h.d); !bytes.Equal(got, h.blob) {
		t.Fatal("the holder's body differs from upstream's")
	}
	if h.getCount() != 1 {
		t.Fatalf("upstream saw %d GETs, want 1", h.getCount())
	}
	release, _, err := b.Acquire(t.Context(), h.d.String())
	if err != nil || release == nil {
		t.Fatalf("the lease was not released after the body was closed (err %v)", err)
	}
	release()
}

func TestTheFillEndpointRefusesStrangersAndBadRequests(t *testing.T) {
	h := newHub(t, 4096)
	srv := httptest.NewServer(fillcoord.Handler(source{blob: h.blob, failAt: -1}, "k", slog.Default()))
	t.Cleanup(srv.Close)
	other := "sha256:" + strings.Repeat("ab", 32)
	cases := []struct {
		name   string
		path   string
		token  string
		status int
	}{
		{name: "no token is refused", path: h.d.String(), status: http.StatusUnauthorized},
		{name: "a wrong token is refused", path: h.d.String(), token: "nope", status: http.StatusUnauthorized},
		{name: "a malformed digest is a bad request", path: "sha256:xyz", token: "k", status: http.StatusBadRequest},
		{name: "a negative offset is a bad request", path: h.d.String() + "?offset=-1", token: "k", status: http.StatusBadRequest},
		{name: "a blob it neither fills nor stores is not found", path: other + "?offset=99999", token: "k", status: http.StatusNotFound},
		{name: "the right token gets the bytes", path: h.d.String() + "?offset=10", token: "k", status: http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+fillcoord.FillPath+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
			}
			if tc.status == http.StatusOK && (!bytes.Equal(body, h.blob[10:]) || resp.Header.Get(fillcoord.SizeHeader) != "4096") {
				t.Errorf("got %d bytes, size header %q", len(body), resp.Header.Get(fillcoord.SizeHeader))
			}
		})
	}
}

func TestABreakInTheHoldersStreamIsAnErrorNotAnEnd(t *testing.T) {
	h := newHub(t, 4096)
	srv := httptest.NewServer(fillcoord.Handler(source{blob: h.blob, failAt: 1000}, "k", slog.Default()))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+fillcoord.FillPath+h.d.String(), nil)
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a stream cut at 1000 of 4096 bytes read without error")
	}
}

func TestAFollowerThatTakesOverStoresTheWholeVerifiedBlobItself(t *testing.T) {
	dsn := freshSchema(t)
	h := newHub(t, 64<<10)
	store, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	holder := replica(t, dsn, "holder", source{blob: h.blob, failAt: 5000}, "k")
	follower := replica(t, dsn, "follower", source{blob: h.blob, failAt: -1}, "k")
	if release, _, err := holder.Acquire(t.Context(), h.d.String()); err != nil || release == nil {
		t.Fatalf("holder could not take the lease: %v", err)
	}
	holder.Close() // dies without releasing

	up := fillcoord.NewUpstream(h, follower, "k", store)
	rc, _, err := up.GetBlob(t.Context(), "docker.io", "library/x", h.d)
	if err != nil {
		t.Fatal(err)
	}
	if se, ok := rc.(cache.StoredElsewhere); !ok || !se.StoredElsewhere() {
		t.Fatal("a follower's body does not tell the cache that it is stored elsewhere")
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || !bytes.Equal(got, h.blob) {
		t.Fatalf("follower read %d bytes (err %v), want the %d-byte blob", len(got), err, len(h.blob))
	}
	if size, err := store.Stat(t.Context(), h.d); err != nil || size != int64(len(h.blob)) {
		t.Fatalf("after the takeover the store has (%d, %v), want the whole blob", size, err)
	}
}

// A replica that takes the lease after the holder stored the blob and let the lease go (its
// own look at the store came just before the commit) reads the stored object, once upstream's
// HEAD confirms the repository has it with that size; unconfirmed, it fetches from upstream.
func TestALeaseTakenAfterTheBlobWasStoredReadsTheStore(t *testing.T) {
	cases := []struct {
		name        string
		headNoSize  bool
		wantHubGets int
	}{
		{name: "confirmed by a HEAD: no upstream GET", wantHubGets: 0},
		{name: "a HEAD without a size confirms nothing: upstream GET", headNoSize: true, wantHubGets: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn := freshSchema(t)
			h := newHub(t, 64<<10)
			h.headNoSize = tc.headNoSize
			store, err := file.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			w, err := store.Create(t.Context(), h.d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(h.blob); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			a := replica(t, dsn, "a", source{blob: h.blob, failAt: -1}, "k")
			rc, _, err := fillcoord.NewUpstream(h, a, "k", store).GetBlob(t.Context(), "docker.io", "library/x", h.d)
			if err != nil {
				t.Fatal(err)
			}
			se, ok := rc.(cache.StoredElsewhere)
			if stored := ok && se.StoredElsewhere(); stored != (tc.wantHubGets == 0) {
				t.Errorf("body stored elsewhere: %v, want %v", stored, tc.wantHubGets == 0)
			}
			got, err := io.ReadAll(rc)
			_ = rc.Close()
			if err != nil || !bytes.Equal(got, h.blob) {
				t.Fatalf("read %d bytes (err %v), want the %d-byte blob", len(got), err, len(h.blob))
			}
			if n := h.getCount(); n != tc.wantHubGets {
				t.Errorf("upstream saw %d GETs, want %d", n, tc.wantHubGets)
			}
			// The lease is free again either way.
			b := replica(t, dsn, "b", source{blob: h.blob, failAt: -1}, "k")
			release, _, err := b.Acquire(t.Context(), h.d.String())
			if err != nil || release == nil {
				t.Fatalf("the lease was not released (err %v)", err)
			}
			release()
		})
	}
}
