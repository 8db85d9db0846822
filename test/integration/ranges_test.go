package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/test/fakehub"
)

// Single byte ranges of a blob, on a cold cache (the range is answered while the fill runs)
// and on a warm one.
func TestBlobRanges(t *testing.T) {
	const size = 100_000
	type want struct {
		status       int
		from, to     int64 // inclusive, when status is 206
		contentRange string
	}
	cases := []struct {
		name   string
		header string
		want   want
	}{
		{name: "the first bytes", header: "bytes=0-99", want: want{status: 206, from: 0, to: 99}},
		{name: "a middle slice", header: "bytes=40000-49999", want: want{status: 206, from: 40000, to: 49999}},
		{name: "a suffix", header: "bytes=-500", want: want{status: 206, from: -500, to: -1}},
		{name: "an open-ended range", header: "bytes=99000-", want: want{status: 206, from: 99000, to: -1}},
		{name: "an end past the size, clamped", header: "bytes=99990-200000", want: want{status: 206, from: 99990, to: -1}},
		{name: "the last byte", header: "bytes=-1", want: want{status: 206, from: -1, to: -1}},
		{name: "a start at the size, unsatisfiable", header: "bytes=SIZE-", want: want{status: 416}},
		{name: "a start past the size, unsatisfiable", header: "bytes=200000-200010", want: want{status: 416}},
	}
	for _, warm := range []bool{false, true} {
		state := "cold"
		if warm {
			state = "cached"
		}
		for _, tc := range cases {
			t.Run(state+" "+tc.name, func(t *testing.T) {
				e := newEnv(t)
				img := fixtureWithLayerSize(t, e, size)
				layer := must(img.Layers())[0]
				d := must(layer.Digest())
				blob := e.hub.Blob(t, "library/ranges", d)
				n := int64(len(blob))
				url := e.proxy.Path("library/ranges", "blobs/"+d.String())
				if warm {
					if resp, body := do(t, http.MethodGet, url); resp.StatusCode != 200 || !bytes.Equal(body, blob) {
						t.Fatalf("warming GET: %d with %d bytes", resp.StatusCode, len(body))
					}
				}
				header := tc.header
				if header == "bytes=SIZE-" {
					header = fmt.Sprintf("bytes=%d-", n)
				}
				resp, body := do(t, http.MethodGet, url, "Range: "+header)
				if resp.StatusCode != tc.want.status {
					t.Fatalf("Range %s: status %d (%s), want %d", header, resp.StatusCode, truncate(body), tc.want.status)
				}
				if tc.want.status == http.StatusRequestedRangeNotSatisfiable {
					if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes */%d", n); got != want {
						t.Errorf("Content-Range %q, want %q", got, want)
					}
					return
				}
				from, to := tc.want.from, tc.want.to
				if from < 0 {
					from += n
				}
				if to < 0 {
					to += n
				}
				if !bytes.Equal(body, blob[from:to+1]) {
					t.Errorf("Range %s: got %d bytes, want bytes %d-%d of the blob", header, len(body), from, to)
				}
				if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", from, to, n); got != want {
					t.Errorf("Content-Range %q, want %q", got, want)
				}
				if got, want := resp.Header.Get("Content-Length"), fmt.Sprint(to-from+1); got != want {
					t.Errorf("Content-Length %q, want %q", got, want)
				}
				if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
					t.Errorf("Docker-Content-Digest %q, want %s", got, d)
				}
			})
		}
	}
}

// fixtureWithLayerSize pushes library/ranges:1.0 with one layer of size random bytes (the
// compressed blob is a little larger: random bytes do not compress).
func fixtureWithLayerSize(t *testing.T, e *env, size int64) v1.Image {
	t.Helper()
	img := fakehub.RandomImage(t, 1, size, false)
	e.hub.Push(t, "library/ranges", "1.0", img)
	return img
}
