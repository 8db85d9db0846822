package upstream_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/upstream"
	"github.com/hubcache/hubcache/test/fakehub"
)

const reg = "docker.io"

// setup starts a hub holding library/nginx:latest and returns a client pointed at it.
func setup(t *testing.T, hubOpts []fakehub.Option, opts ...upstream.Option) (*fakehub.Hub, *upstream.Client, v1.Image) {
	t.Helper()
	hub := fakehub.New(t, hubOpts...)
	img := fakehub.RandomImage(t, 1, 100_000, false)
	hub.Push(t, "library/nginx", "latest", img)
	return hub, newClient(t, hub, opts...), img
}

func newClient(t *testing.T, hub *fakehub.Hub, opts ...upstream.Option) *upstream.Client {
	t.Helper()
	u, err := url.Parse(hub.URL())
	if err != nil {
		t.Fatal(err)
	}
	// An empty config dir: tests never read the developer's own credentials.
	opts = append([]upstream.Option{upstream.WithDockerConfigDir(t.TempDir())}, opts...)
	c, err := upstream.New(map[string]*url.URL{reg: u}, opts...)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

func TestGetManifestRunsTheTokenFlowAndReturnsTheExactBytes(t *testing.T) {
	hub, c, img := setup(t, nil)
	ctx := context.Background()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()

	body, desc, err := c.GetManifest(ctx, reg, "library/nginx", "latest")
	if err != nil {
		t.Fatalf("get manifest: %v", err)
	}
	if !bytes.Equal(body, raw) || desc.Digest != want || desc.Size != int64(len(raw)) ||
		desc.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Fatalf("got %s %s %d, want %s", desc.Digest, desc.MediaType, desc.Size, want)
	}
	if _, _, err := c.GetManifest(ctx, reg, "library/nginx", want.String()); err != nil {
		t.Fatalf("get manifest by digest: %v", err)
	}
	counts := hub.Counts()
	if counts.Token != 1 {
		t.Errorf("token requests %d, want 1 (the transport is reused per repository)", counts.Token)
	}
	if counts.ManifestGET["library/nginx:latest"] != 1 || counts.ManifestGET["library/nginx@"+want.String()] != 1 {
		t.Errorf("manifest GETs %v", counts.ManifestGET)
	}
	if limit, remaining, ok := c.RateLimit(reg); !ok || limit != 100 || remaining != 98 {
		t.Errorf("rate limit %d/%d %v, want 100/98", limit, remaining, ok)
	}
}

func TestHeadManifestDoesNotCountAsAPull(t *testing.T) {
	hub, c, img := setup(t, nil)
	want, _ := img.Digest()
	desc, err := c.HeadManifest(context.Background(), reg, "library/nginx", "latest")
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	raw, _ := img.RawManifest()
	if desc.Digest != want || desc.Size != int64(len(raw)) || desc.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Fatalf("got %+v", desc)
	}
	counts := hub.Counts()
	if counts.TotalManifestGET() != 0 || counts.ManifestHEAD["library/nginx:latest"] != 1 {
		t.Fatalf("counts GET %v HEAD %v", counts.ManifestGET, counts.ManifestHEAD)
	}
	if _, remaining, ok := c.RateLimit(reg); !ok || remaining != 100 {
		t.Fatalf("remaining %d %v, want 100", remaining, ok)
	}
}

func TestMultiArchIndexesAndOCIManifestsComeBackVerbatim(t *testing.T) {
	hub := fakehub.New(t)
	idx := fakehub.RandomIndex(t, []string{"linux/amd64", "linux/arm64"}, 1, 64, true)
	d := hub.PushIndex(t, "library/busybox", "1", idx)
	c := newClient(t, hub)
	raw, _ := idx.RawManifest()
	body, desc, err := c.GetManifest(context.Background(), reg, "library/busybox", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, raw) || desc.Digest != d || desc.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("got %+v", desc)
	}
	im, _ := idx.IndexManifest()
	child := im.Manifests[1].Digest
	_, cd, err := c.GetManifest(context.Background(), reg, "library/busybox", child.String())
	if err != nil || cd.Digest != child || cd.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("child: %+v %v", cd, err)
	}
}

func TestBlobsStreamWithTheirSize(t *testing.T) {
	hub, c, img := setup(t, nil)
	ctx := context.Background()
	d := fakehub.FirstLayer(t, img)
	want := hub.Blob(t, "library/nginx", d)

	size, err := c.HeadBlob(ctx, reg, "library/nginx", d)
	if err != nil || size != int64(len(want)) {
		t.Fatalf("head blob: %d %v, want %d", size, err, len(want))
	}
	rc, size, err := c.GetBlob(ctx, reg, "library/nginx", d)
	if err != nil {
		t.Fatalf("get blob: %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) || size != int64(len(want)) {
		t.Fatalf("blob: %d bytes (size %d), equal %v, err %v", len(got), size, bytes.Equal(got, want), err)
	}
	if n := hub.Counts().BlobGET[d.String()]; n != 1 {
		t.Fatalf("blob GETs %d, want 1", n)
	}
}

func TestMissingContentIsNotFound(t *testing.T) {
	hub, c, img := setup(t, nil)
	hub.Push(t, "bob/other", "v1", fakehub.RandomImage(t, 1, 64, false))
	ctx := context.Background()
	layer := fakehub.FirstLayer(t, img)
	tests := []struct {
		name string
		call func() error
	}{
		{"an unknown tag", func() error { _, _, err := c.GetManifest(ctx, reg, "library/nginx", "nope"); return err }},
		{"an unknown repository", func() error { _, _, err := c.GetManifest(ctx, reg, "library/nope", "latest"); return err }},
		{"a HEAD for an unknown tag", func() error { _, err := c.HeadManifest(ctx, reg, "library/nginx", "nope"); return err }},
		{"a blob of another repository", func() error {
			_, _, err := c.GetBlob(ctx, reg, "bob/other", layer)
			return err
		}},
		{"a HEAD for a blob of another repository", func() error {
			_, err := c.HeadBlob(ctx, reg, "bob/other", layer)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, upstream.ErrNotFound) {
				t.Fatalf("got %v, want ErrNotFound", err)
			}
		})
	}
}

func TestFailureModesMapToErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		mode  fakehub.Mode
		check func(t *testing.T, c *upstream.Client, d v1.Hash)
	}{
		{"a registry that is down is unavailable", fakehub.Down(), func(t *testing.T, c *upstream.Client, _ v1.Hash) {
			_, _, err := c.GetManifest(ctx, reg, "library/nginx", "latest")
			wantIs(t, err, upstream.ErrUnavailable)
		}},
		{"a 503 is unavailable", fakehub.Status(503), func(t *testing.T, c *upstream.Client, _ v1.Hash) {
			_, err := c.HeadManifest(ctx, reg, "library/nginx", "latest")
			wantIs(t, err, upstream.ErrUnavailable)
		}},
		{"a 500 is unavailable", fakehub.Status(500), func(t *testing.T, c *upstream.Client, d v1.Hash) {
			_, _, err := c.GetBlob(ctx, reg, "library/nginx", d)
			wantIs(t, err, upstream.ErrUnavailable)
		}},
		{"a 429 is a rate limit error with Retry-After, and HEAD still works", fakehub.RateLimited(42 * time.Second), func(t *testing.T, c *upstream.Client, d v1.Hash) {
			_, _, err := c.GetManifest(ctx, reg, "library/nginx", "latest")
			var rl *upstream.RateLimitError
			if !errors.As(err, &rl) || rl.RetryAfter != 42*time.Second || rl.Message != fakehub.PullLimitMessage {
				t.Fatalf("got %v, want a rate limit error with Retry-After 42s", err)
			}
			if _, _, err := c.GetBlob(ctx, reg, "library/nginx", d); !errors.As(err, &rl) {
				t.Fatalf("blob: got %v, want a rate limit error", err)
			}
			if _, err := c.HeadManifest(ctx, reg, "library/nginx", "latest"); err != nil {
				t.Fatalf("HEAD: %v", err)
			}
		}},
		{"a 401 with no token to be had is unauthorized", fakehub.Unauthorized(), func(t *testing.T, c *upstream.Client, _ v1.Hash) {
			_, _, err := c.GetManifest(ctx, reg, "library/nginx", "latest")
			wantIs(t, err, upstream.ErrUnauthorized)
		}},
		{"a corrupt manifest is a digest mismatch", fakehub.Corrupt(), func(t *testing.T, c *upstream.Client, _ v1.Hash) {
			_, _, err := c.GetManifest(ctx, reg, "library/nginx", "latest")
			wantIs(t, err, upstream.ErrDigestMismatch)
		}},
		{"a truncated manifest is unavailable", fakehub.Truncated(), func(t *testing.T, c *upstream.Client, _ v1.Hash) {
			_, _, err := c.GetManifest(ctx, reg, "library/nginx", "latest")
			wantIs(t, err, upstream.ErrUnavailable)
		}},
		{"a truncated blob fails while reading", fakehub.Truncated(), func(t *testing.T, c *upstream.Client, d v1.Hash) {
			rc, _, err := c.GetBlob(ctx, reg, "library/nginx", d)
			if err != nil {
				t.Fatalf("headers should arrive: %v", err)
			}
			defer rc.Close()
			if _, err := io.ReadAll(rc); err == nil {
				t.Fatal("read a truncated body without error")
			}
		}},
		{"a corrupt blob comes back with other bytes for the caller to reject", fakehub.Corrupt(), func(t *testing.T, c *upstream.Client, d v1.Hash) {
			rc, _, err := c.GetBlob(ctx, reg, "library/nginx", d)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, _, err := v1.SHA256(rc)
			if err != nil || got == d {
				t.Fatalf("digest %s err %v: corrupt bytes were not corrupt", got, err)
			}
		}},
		{"headers slower than the timeout are unavailable", fakehub.Slow(5*time.Second, 0), func(t *testing.T, c *upstream.Client, d v1.Hash) {
			_, _, err := c.GetBlob(ctx, reg, "library/nginx", d)
			wantIs(t, err, upstream.ErrUnavailable)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub, c, img := setup(t, nil, upstream.WithTimeout(300*time.Millisecond))
			// Authenticate first so the modes also hit an already-built transport.
			if _, err := c.HeadManifest(ctx, reg, "library/nginx", "latest"); err != nil {
				t.Fatal(err)
			}
			hub.SetMode(tt.mode)
			tt.check(t, c, fakehub.FirstLayer(t, img))

			// A fresh client meets the mode during the token flow too.
			if tt.name == "a registry that is down is unavailable" || tt.name == "a 401 with no token to be had is unauthorized" {
				_, _, err := newClient(t, hub).GetManifest(ctx, reg, "library/nginx", "latest")
				if err == nil {
					t.Fatal("fresh client succeeded")
				}
			}
			hub.SetMode(fakehub.Normal())
			if _, _, err := c.GetManifest(ctx, reg, "library/nginx", "latest"); err != nil {
				t.Fatalf("after recovery: %v", err)
			}
		})
	}
}

func TestADigestReferenceMustMatchTheBody(t *testing.T) {
	hub, c, img := setup(t, nil)
	d, _ := img.Digest()
	hub.SetDigestMode(d, fakehub.Corrupt())
	_, _, err := c.GetManifest(context.Background(), reg, "library/nginx", d.String())
	wantIs(t, err, upstream.ErrDigestMismatch)
}

func TestManifestsOverTheCapAreRefused(t *testing.T) {
	_, c, _ := setup(t, nil, upstream.WithMaxManifestSize(100))
	_, _, err := c.GetManifest(context.Background(), reg, "library/nginx", "latest")
	wantIs(t, err, upstream.ErrTooLarge)
}

func TestCredentialsComeFromTheDockerConfigDir(t *testing.T) {
	hub := fakehub.New(t, fakehub.WithCredentials("alice", "s3cret"))
	hub.Push(t, "alice/private", "v1", fakehub.RandomImage(t, 1, 64, false))
	u, _ := url.Parse(hub.URL())
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))

	tests := []struct {
		name     string
		registry string
		key      string // the config.json key; "" writes no config.json
		wantErr  error
	}{
		{"no config file means anonymous, which the hub refuses", reg, "", upstream.ErrUnauthorized},
		{"Docker Hub credentials under Docker's historical key are used for docker.io", reg, "https://index.docker.io/v1/", nil},
		{"credentials under the upstream host are used", "example.com", hub.Host(), nil},
		{"credentials for another registry are not used", reg, "ghcr.io", upstream.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.key != "" {
				cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, tt.key, auth)
				if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := upstream.New(map[string]*url.URL{tt.registry: u}, upstream.WithDockerConfigDir(dir))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = c.GetManifest(context.Background(), tt.registry, "alice/private", "v1")
			if tt.wantErr == nil && err != nil {
				t.Fatalf("pull with credentials: %v", err)
			}
			if tt.wantErr != nil {
				wantIs(t, err, tt.wantErr)
			}
		})
	}
}

// refuse is a transport that records every request and answers none.
type refuse struct {
	mu   sync.Mutex
	urls []string
}

func (r *refuse) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.urls = append(r.urls, req.URL.String())
	return nil, errors.New("refused by test")
}

func TestBadNamesAndUnknownRegistriesNeverReachTheNetwork(t *testing.T) {
	rt := &refuse{}
	u, _ := url.Parse("https://registry-1.docker.io")
	c, err := upstream.New(map[string]*url.URL{reg: u}, upstream.WithTransport(rt), upstream.WithDockerConfigDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d, _ := v1.NewHash("sha256:" + fmt.Sprintf("%064x", 1))
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"an unknown registry", func() error { _, _, err := c.GetManifest(ctx, "ghcr.io", "a/b", "latest"); return err }, upstream.ErrUnknownRegistry},
		{"an unknown registry for a blob", func() error { _, _, err := c.GetBlob(ctx, "quay.io", "a/b", d); return err }, upstream.ErrUnknownRegistry},
		{"an unknown registry for a HEAD", func() error { _, err := c.HeadManifest(ctx, "169.254.169.254", "a/b", "x"); return err }, upstream.ErrUnknownRegistry},
		{"a repository with dot-dot", func() error { _, _, err := c.GetManifest(ctx, reg, "library/../etc", "latest"); return err }, upstream.ErrNotFound},
		{"a repository with upper case", func() error { _, _, err := c.GetManifest(ctx, reg, "Library/Nginx", "latest"); return err }, upstream.ErrNotFound},
		{"a repository with an encoded slash", func() error { _, _, err := c.GetManifest(ctx, reg, "library%2fnginx", "latest"); return err }, upstream.ErrNotFound},
		{"a repository with an empty component", func() error { _, _, err := c.GetManifest(ctx, reg, "library//nginx", "latest"); return err }, upstream.ErrNotFound},
		{"an over-long repository", func() error {
			_, _, err := c.GetManifest(ctx, reg, "a/"+strings.Repeat("b", 300), "latest")
			return err
		}, upstream.ErrNotFound},
		{"a tag with a slash", func() error { _, _, err := c.GetManifest(ctx, reg, "library/nginx", "a/../b"); return err }, upstream.ErrNotFound},
		{"an invalid digest", func() error { _, _, err := c.GetManifest(ctx, reg, "library/nginx", "sha256:zz"); return err }, upstream.ErrNotFound},
		{"a non-sha256 digest", func() error {
			_, _, err := c.GetManifest(ctx, reg, "library/nginx", "sha512:"+fmt.Sprintf("%0128x", 1))
			return err
		}, upstream.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantIs(t, tt.call(), tt.want)
		})
	}
	if len(rt.urls) != 0 {
		t.Fatalf("requests were sent: %v", rt.urls)
	}
}

func TestAnHTTPSUpstreamIsNeverTriedOverPlainHTTP(t *testing.T) {
	hub, _, _ := setup(t, nil)
	u, _ := url.Parse("https://" + hub.Host())
	c, err := upstream.New(map[string]*url.URL{reg: u}, upstream.WithDockerConfigDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.GetManifest(context.Background(), reg, "library/nginx", "latest")
	wantIs(t, err, upstream.ErrUnavailable)
	if n := hub.Counts().Token + hub.Counts().Challenged; n != 0 {
		t.Fatalf("the plain-HTTP hub was reached %d times", n)
	}
}

func TestInvalidUpstreamURLsAreRejected(t *testing.T) {
	for _, s := range []string{"ftp://x", "https://", "https://host/path", "https://user:pw@host"} {
		u, _ := url.Parse(s)
		if _, err := upstream.New(map[string]*url.URL{reg: u}); err == nil {
			t.Errorf("%s was accepted", s)
		}
	}
}

func TestTheObserverSeesEveryRequest(t *testing.T) {
	type call struct {
		method, registry string
		status           int
	}
	var mu sync.Mutex
	var calls []call
	observe := func(method, registry string, status int) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{method, registry, status})
	}
	_, c, _ := setup(t, nil, upstream.WithObserver(observe))
	ctx := context.Background()
	_, _ = c.HeadManifest(ctx, reg, "library/nginx", "latest")
	_, _, _ = c.GetManifest(ctx, reg, "library/nginx", "nope")
	want := []call{{"HEAD", reg, 200}, {"GET", reg, 404}}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", calls, want)
	}
}

func TestConcurrentRequestsShareTheClient(t *testing.T) {
	hub, c, img := setup(t, nil)
	d := fakehub.FirstLayer(t, img)
	want := hub.Blob(t, "library/nginx", d)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := c.GetManifest(ctx, reg, "library/nginx", "latest"); err != nil {
				errs <- err
				return
			}
			rc, _, err := c.GetBlob(ctx, reg, "library/nginx", d)
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err == nil && !bytes.Equal(got, want) {
				err = errors.New("wrong blob bytes")
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
