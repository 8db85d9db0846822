package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubcache/hubcache/proxy/oci"
)

// fakeBackend serves fixed content and records what it was asked.
type fakeBackend struct {
	mu        sync.Mutex
	calls     []string
	manifests map[string]oci.Manifest // "repo@ref"
	blobs     map[v1.Hash][]byte
	err       error
	// failAfter makes blob readers fail after that many bytes (0: never).
	failAfter int
}

func (f *fakeBackend) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeBackend) Manifest(_ context.Context, repo oci.Repo, ref string) (oci.Manifest, error) {
	f.record("manifest " + repo.String() + " " + ref)
	if f.err != nil {
		return oci.Manifest{}, f.err
	}
	m, ok := f.manifests[repo.String()+"@"+ref]
	if !ok {
		return oci.Manifest{}, oci.ErrManifestUnknown
	}
	return m, nil
}

func (f *fakeBackend) Blob(_ context.Context, repo oci.Repo, d v1.Hash) (oci.Blob, error) {
	f.record("blob " + repo.String() + " " + d.String())
	if f.err != nil {
		return nil, f.err
	}
	b, ok := f.blobs[d]
	if !ok {
		return nil, oci.ErrBlobUnknown
	}
	return &fakeBlob{d: d, b: b, failAfter: f.failAfter}, nil
}

func (f *fakeBackend) StatBlob(_ context.Context, repo oci.Repo, d v1.Hash) (int64, error) {
	f.record("stat " + repo.String() + " " + d.String())
	if f.err != nil {
		return 0, f.err
	}
	b, ok := f.blobs[d]
	if !ok {
		return 0, oci.ErrBlobUnknown
	}
	return int64(len(b)), nil
}

type fakeBlob struct {
	d         v1.Hash
	b         []byte
	failAfter int
}

func (b *fakeBlob) Digest() v1.Hash { return b.d }
func (b *fakeBlob) Size() int64     { return int64(len(b.b)) }
func (b *fakeBlob) Open(_ context.Context, offset, length int64) (io.ReadCloser, error) {
	if length < 0 {
		length = int64(len(b.b)) - offset
	}
	data := b.b[offset : offset+length]
	if b.failAfter > 0 {
		return io.NopCloser(io.MultiReader(bytes.NewReader(data[:b.failAfter]), errReader{})), nil
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("fill failed: digest mismatch") }

func hashOf(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

var (
	manifestBody = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`)
	manifestHash = hashOf(manifestBody)
	blobBody     = []byte("0123456789abcdefghij")
	blobHash     = hashOf(blobBody)
)

func newTestServer(t *testing.T) (*fakeBackend, *httptest.Server) {
	t.Helper()
	m := oci.Manifest{Digest: manifestHash, MediaType: "application/vnd.docker.distribution.manifest.v2+json", Body: manifestBody}
	b := &fakeBackend{
		manifests: map[string]oci.Manifest{
			"docker.io/library/nginx@latest":                   m,
			"docker.io/library/nginx@" + manifestHash.String(): m,
		},
		blobs: map[v1.Hash][]byte{blobHash: blobBody},
	}
	h, err := New(b, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return b, srv
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, body
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var eb struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) != 1 {
		t.Fatalf("not an OCI error body: %q", body)
	}
	return eb.Errors[0].Code
}

func TestTheBaseEndpointAnswersWithTheAPIVersion(t *testing.T) {
	_, srv := newTestServer(t)
	for _, path := range []string{"/v2/", "/v2"} {
		resp, _ := do(t, http.MethodGet, srv.URL+path, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, resp.Header)
		}
	}
}

func TestManifestsAreServedWithTheirStoredTypeDigestLengthAndETag(t *testing.T) {
	_, srv := newTestServer(t)
	for _, path := range []string{
		"/v2/docker.io/library/nginx/manifests/latest",
		"/v2/docker.io/nginx/manifests/latest",
		"/v2/index.docker.io/library/nginx/manifests/latest",
		"/v2/library/nginx/manifests/latest?ns=docker.io",
		"/v2/library/nginx/manifests/latest",
		"/v2/docker.io/library/nginx/manifests/" + manifestHash.String(),
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, body := do(t, method, srv.URL+path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, body)
			}
			h := resp.Header
			if h.Get("Content-Type") != "application/vnd.docker.distribution.manifest.v2+json" ||
				h.Get("Docker-Content-Digest") != manifestHash.String() ||
				h.Get("Content-Length") != fmt.Sprint(len(manifestBody)) ||
				h.Get("ETag") != `"`+manifestHash.String()+`"` {
				t.Fatalf("%s %s: headers %v", method, path, h)
			}
			if method == http.MethodGet && !bytes.Equal(body, manifestBody) {
				t.Fatalf("%s: body %q", path, body)
			}
			if method == http.MethodHead && len(body) != 0 {
				t.Fatalf("HEAD %s has a body", path)
			}
		}
	}
}

func TestBlobRangesAreAnsweredLikeHTTPSays(t *testing.T) {
	_, srv := newTestServer(t)
	url := srv.URL + "/v2/docker.io/library/nginx/blobs/" + blobHash.String()
	size := len(blobBody)
	for _, tc := range []struct {
		name, rng    string
		status       int
		body         string
		contentRange string
	}{
		{"no range sends everything", "", 200, string(blobBody), ""},
		{"the first bytes", "bytes=0-3", 206, "0123", "bytes 0-3/20"},
		{"a middle slice", "bytes=5-9", 206, "56789", "bytes 5-9/20"},
		{"a suffix", "bytes=-4", 206, "ghij", "bytes 16-19/20"},
		{"an open end", "bytes=15-", 206, "fghij", "bytes 15-19/20"},
		{"an end past the size is clamped", "bytes=18-100", 206, "ij", "bytes 18-19/20"},
		{"a start past the end is unsatisfiable", "bytes=20-", 416, "", "bytes */20"},
		{"several ranges send everything", "bytes=0-1,5-6", 200, string(blobBody), ""},
		{"a malformed range is ignored", "bytes=x-y", 200, string(blobBody), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, http.MethodGet, url, map[string]string{"Range": tc.rng})
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange {
				t.Fatalf("status %d, Content-Range %q; want %d, %q", resp.StatusCode, resp.Header.Get("Content-Range"), tc.status, tc.contentRange)
			}
			if tc.status != 416 && string(body) != tc.body {
				t.Fatalf("body %q, want %q", body, tc.body)
			}
			if tc.status == 416 && errorCode(t, body) == "" {
				t.Fatal("416 without an error body")
			}
			if tc.status != 416 && resp.Header.Get("Docker-Content-Digest") != blobHash.String() {
				t.Fatalf("digest header %q", resp.Header.Get("Docker-Content-Digest"))
			}
		})
	}
	resp, _ := do(t, http.MethodHead, url, nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(size) {
		t.Fatalf("HEAD blob: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

func TestABlobThatFailsMidStreamBreaksTheResponse(t *testing.T) {
	b, srv := newTestServer(t)
	b.failAfter = 5
	resp, err := http.Get(srv.URL + "/v2/docker.io/library/nginx/blobs/" + blobHash.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("client read a complete-looking body of %d bytes", len(got))
	}
}

func TestHostileAndInvalidRequestsAreRefusedWithoutAskingTheBackend(t *testing.T) {
	b, srv := newTestServer(t)
	long := strings.Repeat("a", 250)
	for _, tc := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"a dot-dot component", "GET", "/v2/docker.io/library/../x/manifests/latest", 400, oci.CodeNameInvalid},
		{"an encoded dot-dot component", "GET", "/v2/docker.io/library/%2e%2e/x/manifests/latest", 400, oci.CodeNameInvalid},
		{"an encoded slash", "GET", "/v2/docker.io/library%2Fnginx/manifests/latest", 400, oci.CodeNameInvalid},
		{"an over-long name", "GET", "/v2/docker.io/library/" + long + "/manifests/latest", 400, oci.CodeNameInvalid},
		{"an uppercase name", "GET", "/v2/docker.io/library/NGINX/manifests/latest", 400, oci.CodeNameInvalid},
		{"an uppercase registry", "GET", "/v2/Docker.io/library/nginx/manifests/latest", 400, oci.CodeNameInvalid},
		{"an empty component", "GET", "/v2/docker.io/library//nginx/manifests/latest", 400, oci.CodeNameInvalid},
		{"an invalid blob digest", "GET", "/v2/docker.io/library/nginx/blobs/sha256:xyz", 400, oci.CodeDigestInvalid},
		{"an uppercase digest", "GET", "/v2/docker.io/library/nginx/blobs/sha256:" + strings.ToUpper(blobHash.Hex), 400, oci.CodeDigestInvalid},
		{"another digest algorithm", "GET", "/v2/docker.io/library/nginx/manifests/md5:abc", 400, oci.CodeDigestInvalid},
		{"an invalid tag", "GET", "/v2/docker.io/library/nginx/manifests/.INVALID", 404, oci.CodeManifestUnknown},
		{"an ns that is not a registry", "GET", "/v2/library/nginx/manifests/latest?ns=evil/../x", 404, oci.CodeNameUnknown},
		{"a manifest push", "PUT", "/v2/docker.io/library/nginx/manifests/latest", 405, oci.CodeUnsupported},
		{"a manifest delete", "DELETE", "/v2/docker.io/library/nginx/manifests/latest", 405, oci.CodeUnsupported},
		{"a blob delete", "DELETE", "/v2/docker.io/library/nginx/blobs/" + blobHash.String(), 405, oci.CodeUnsupported},
		{"an upload start", "POST", "/v2/docker.io/library/nginx/blobs/uploads/", 405, oci.CodeUnsupported},
		{"an upload chunk", "PATCH", "/v2/docker.io/library/nginx/blobs/uploads/abc", 405, oci.CodeUnsupported},
		{"a tag list", "GET", "/v2/docker.io/library/nginx/tags/list", 404, oci.CodeUnsupported},
		{"the catalog", "GET", "/v2/_catalog", 404, oci.CodeUnsupported},
		{"a path outside the API", "GET", "/v3/x", 404, oci.CodeUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || errorCode(t, body) != tc.code {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	if len(b.calls) != 0 {
		t.Fatalf("backend was asked: %v", b.calls)
	}
}

func TestAnNsNamesTheRegistryOfAMirrorRequest(t *testing.T) {
	b, srv := newTestServer(t)
	b.err = oci.ErrNameUnknown
	resp, body := do(t, http.MethodGet, srv.URL+"/v2/foo/bar/manifests/latest?ns=ghcr.io", nil)
	if resp.StatusCode != 404 || errorCode(t, body) != oci.CodeNameUnknown {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if len(b.calls) != 1 || b.calls[0] != "manifest ghcr.io/foo/bar latest" {
		t.Fatalf("backend calls %v", b.calls)
	}
}

func TestBackendErrorsBecomeOCIErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{"an unknown manifest is 404", fmt.Errorf("x: %w", oci.ErrManifestUnknown), 404, oci.CodeManifestUnknown, ""},
		{"an unknown name is 404", oci.ErrNameUnknown, 404, oci.CodeNameUnknown, ""},
		{"a rate limit is 429 with Retry-After", &oci.TooManyRequestsError{RetryAfter: 90 * time.Second}, 429, oci.CodeTooManyRequests, "90"},
		{"a rate limit without Retry-After", &oci.TooManyRequestsError{}, 429, oci.CodeTooManyRequests, ""},
		{"upstream down on a miss is 503", oci.ErrUnavailable, 503, oci.CodeUnavailable, ""},
		{"upstream refusal is 403", oci.ErrUnauthorized, 403, oci.CodeDenied, ""},
		{"an oversized manifest is 502", oci.ErrTooLarge, 502, oci.CodeManifestInvalid, ""},
		{"anything else is 500", errors.New("disk on fire"), 500, oci.CodeUnknown, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, srv := newTestServer(t)
			b.err = tc.err
			resp, body := do(t, http.MethodGet, srv.URL+"/v2/docker.io/library/nginx/manifests/latest", nil)
			if resp.StatusCode != tc.status || errorCode(t, body) != tc.code || resp.Header.Get("Retry-After") != tc.retryAfter {
				t.Fatalf("%d %s Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
			}
		})
	}
}

func TestTheFirstComponentIsARegistryWhenItLooksLikeAHost(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/v2/localhost/foo/manifests/v1", "manifest localhost/foo v1"},
		{"/v2/localhost:5001/foo/manifests/v1", "manifest localhost:5001/foo v1"},
		{"/v2/127.0.0.1:5001/foo/bar/manifests/v1", "manifest 127.0.0.1:5001/foo/bar v1"},
		{"/v2/ghcr.io/foo/bar/manifests/v1", "manifest ghcr.io/foo/bar v1"},
		{"/v2/registry-1.docker.io/foo/bar/manifests/v1", "manifest docker.io/foo/bar v1"},
		{"/v2/foo/bar/manifests/v1", "manifest docker.io/foo/bar v1"},
		{"/v2/foo/manifests/v1?ns=docker.io", "manifest docker.io/library/foo v1"},
		{"/v2/foo/bar/manifests/v1?ns=index.docker.io", "manifest docker.io/foo/bar v1"},
		{"/v2/localhost/manifests/v1", "manifest docker.io/library/localhost v1"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			b, srv := newTestServer(t)
			do(t, http.MethodGet, srv.URL+tc.path, nil)
			if len(b.calls) != 1 || b.calls[0] != tc.want {
				t.Fatalf("backend calls %v, want [%s]", b.calls, tc.want)
			}
		})
	}
}

func TestMadeUpMethodsShareOneMetricLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, err := New(&fakeBackend{}, WithLogger(slog.New(slog.DiscardHandler)), WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for i := range 50 {
		do(t, fmt.Sprintf("MADEUP%d", i), srv.URL+"/v2/docker.io/library/nginx/manifests/latest", nil)
	}
	do(t, http.MethodGet, srv.URL+"/v2/", nil)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" {
					methods[l.GetValue()] = true
				}
			}
		}
	}
	if len(methods) != 2 || !methods["GET"] || !methods["other"] {
		t.Fatalf("method label values %v, want exactly GET and other", methods)
	}
}

func TestAFailedMissTellsTheClientOnlyACodeAndTheRequestID(t *testing.T) {
	b, srv := newTestServer(t)
	b.err = fmt.Errorf("%w: Get \"https://10.9.8.7:443/v2/\": dial tcp 10.9.8.7:443: connect: connection refused", oci.ErrUnavailable)
	resp, body := do(t, http.MethodGet, srv.URL+"/v2/docker.io/library/nginx/manifests/latest", nil)
	if resp.StatusCode != 503 || errorCode(t, body) != oci.CodeUnavailable {
		t.Fatalf("got %d %s, want 503 UNAVAILABLE", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "10.9.8.7") || strings.Contains(string(body), "dial") {
		t.Fatalf("the body leaks the upstream failure: %s", body)
	}
	id := resp.Header.Get(oci.RequestIDHeader)
	if id == "" || !strings.Contains(string(body), id) {
		t.Fatalf("the body %s does not carry the request id %q", body, id)
	}
}
