package fakehub_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/hubcache/hubcache/test/fakehub"
)

func TestCranePullsThroughTheTokenFlowAndOnlyGETsCount(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 2, 1024, false)
	d := hub.Push(t, "library/nginx", "1.27", img)
	if c := hub.Counts(); c.TotalManifestGET()+c.TotalBlobGET()+c.Token != 0 {
		t.Fatalf("push was counted: %+v", c)
	}

	desc, err := crane.Head(hub.Ref("library/nginx", "1.27"), crane.Insecure)
	if err != nil {
		t.Fatalf("crane head: %v", err)
	}
	if desc.Digest != d {
		t.Fatalf("head digest %s, pushed %s", desc.Digest, d)
	}
	if got := hub.RateLimitRemaining(); got != 100 {
		t.Fatalf("a HEAD used the rate limit: remaining %d", got)
	}

	pulled, err := crane.Pull(hub.Ref("library/nginx", "1.27"), crane.Insecure)
	if err != nil {
		t.Fatalf("crane pull: %v", err)
	}
	fakehub.ReadAll(t, pulled)
	c := hub.Counts()
	if c.Token == 0 {
		t.Errorf("no token was requested")
	}
	if c.ManifestHEAD["library/nginx:1.27"] != 1 {
		t.Errorf("manifest HEADs %v, want one for library/nginx:1.27", c.ManifestHEAD)
	}
	if c.TotalManifestGET() != 1 || c.ManifestGET["library/nginx:1.27"] != 1 {
		t.Errorf("manifest GETs %v, want one for library/nginx:1.27", c.ManifestGET)
	}
	if c.TotalBlobGET() != 3 {
		t.Errorf("blob GETs %v, want config and two layers", c.BlobGET)
	}
	if got := hub.RateLimitRemaining(); got != 99 {
		t.Errorf("remaining %d after one manifest GET, want 99", got)
	}
	hub.Reset()
	if c := hub.Counts(); c.TotalManifestGET() != 0 || hub.RateLimitRemaining() != 100 {
		t.Errorf("reset kept counts %+v", c)
	}
}

func TestMultiArchIndexesPushAndPull(t *testing.T) {
	for _, oci := range []bool{false, true} {
		hub := fakehub.New(t)
		idx := fakehub.RandomIndex(t, []string{"linux/amd64", "linux/arm64/v8"}, 1, 256, oci)
		d := hub.PushIndex(t, "library/busybox", "latest", idx)
		desc, err := crane.Head(hub.Ref("library/busybox", "latest"), crane.Insecure)
		if err != nil {
			t.Fatalf("head: %v", err)
		}
		want := "application/vnd.docker.distribution.manifest.list.v2+json"
		if oci {
			want = "application/vnd.oci.image.index.v1+json"
		}
		if desc.Digest != d || string(desc.MediaType) != want {
			t.Fatalf("got %s %s, want %s %s", desc.Digest, desc.MediaType, d, want)
		}
		if _, err := crane.Pull(hub.Ref("library/busybox", "latest"), crane.Insecure, crane.WithPlatform(&v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})); err != nil {
			t.Fatalf("pull arm64: %v", err)
		}
	}
}

func TestCredentialsAreRequiredWhenConfigured(t *testing.T) {
	hub := fakehub.New(t, fakehub.WithCredentials("alice", "s3cret"))
	hub.Push(t, "alice/private", "v1", fakehub.RandomImage(t, 1, 64, true))

	if _, err := crane.Digest(hub.Ref("alice/private", "v1"), crane.Insecure); !isStatus(err, http.StatusUnauthorized) {
		t.Fatalf("anonymous pull: got %v, want 401", err)
	}
	auth := crane.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})
	if _, err := crane.Digest(hub.Ref("alice/private", "v1"), crane.Insecure, auth); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if hub.Counts().TokenWithCredentials == 0 {
		t.Fatalf("token requests with credentials were not counted")
	}
}

func TestBlobsAreServedOnlyUnderRepositoriesTheyWerePushedTo(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 1, 64, false)
	hub.Push(t, "alice/private", "v1", img)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	c := newClient(t, hub)
	if resp := c.do(t, http.MethodGet, "/v2/alice/private/blobs/"+d.String()); resp.StatusCode != http.StatusOK {
		t.Fatalf("own repository: status %d", resp.StatusCode)
	}
	if resp := c.do(t, http.MethodGet, "/v2/bob/public/blobs/"+d.String()); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("other repository: status %d, want 404", resp.StatusCode)
	}
}

func TestEnforcedPullLimitAnswers429WhenUsedUp(t *testing.T) {
	hub := fakehub.New(t, fakehub.WithPullLimit(1))
	hub.Push(t, "library/nginx", "latest", fakehub.RandomImage(t, 1, 64, false))
	c := newClient(t, hub)
	first := c.do(t, http.MethodGet, "/v2/library/nginx/manifests/latest")
	if first.StatusCode != http.StatusOK || first.Header.Get("ratelimit-remaining") != "0;w=21600" || first.Header.Get("ratelimit-limit") != "1;w=21600" {
		t.Fatalf("first pull: %d %v", first.StatusCode, first.Header)
	}
	if resp := c.do(t, http.MethodHead, "/v2/library/nginx/manifests/latest"); resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD after the limit: %d, want 200", resp.StatusCode)
	}
	if resp := c.do(t, http.MethodGet, "/v2/library/nginx/manifests/latest"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second pull: %d, want 429", resp.StatusCode)
	}
}

func TestModes(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 1, 200_000, false)
	md := hub.Push(t, "library/nginx", "latest", img)
	other := hub.Push(t, "library/redis", "latest", fakehub.RandomImage(t, 1, 64, false))
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	want := hub.Blob(t, "library/nginx", ld)
	manifestPath := "/v2/library/nginx/manifests/latest"
	blobPath := "/v2/library/nginx/blobs/" + ld.String()

	tests := []struct {
		name  string
		mode  fakehub.Mode
		check func(t *testing.T, c *client)
	}{
		{"down closes connections", fakehub.Down(), func(t *testing.T, c *client) {
			if _, err := c.try(http.MethodGet, manifestPath); err == nil {
				t.Fatal("request succeeded")
			}
		}},
		{"a status mode answers that status", fakehub.Status(503), func(t *testing.T, c *client) {
			if r := c.do(t, http.MethodHead, manifestPath); r.StatusCode != 503 {
				t.Fatalf("status %d", r.StatusCode)
			}
		}},
		{"rate limited refuses GETs with Retry-After and lets HEADs through", fakehub.RateLimited(90 * time.Second), func(t *testing.T, c *client) {
			r := c.do(t, http.MethodGet, manifestPath)
			if r.StatusCode != 429 || r.Header.Get("Retry-After") != "90" || !strings.Contains(string(r.body), "pull rate limit") {
				t.Fatalf("GET: %d %q %s", r.StatusCode, r.Header.Get("Retry-After"), r.body)
			}
			if r := c.do(t, http.MethodGet, blobPath); r.StatusCode != 429 {
				t.Fatalf("blob GET: %d", r.StatusCode)
			}
			if r := c.do(t, http.MethodHead, manifestPath); r.StatusCode != 200 {
				t.Fatalf("HEAD: %d", r.StatusCode)
			}
		}},
		{"unauthorized refuses requests and tokens", fakehub.Unauthorized(), func(t *testing.T, c *client) {
			if r := c.do(t, http.MethodGet, manifestPath); r.StatusCode != 401 {
				t.Fatalf("status %d", r.StatusCode)
			}
			if r := c.doNoAuth(t, http.MethodGet, "/token?scope=repository:library/nginx:pull"); r.StatusCode != 401 {
				t.Fatalf("token status %d", r.StatusCode)
			}
		}},
		{"corrupt keeps the length and changes the bytes", fakehub.Corrupt(), func(t *testing.T, c *client) {
			r := c.do(t, http.MethodGet, blobPath)
			if r.StatusCode != 200 || len(r.body) != len(want) || bytes.Equal(r.body, want) {
				t.Fatalf("status %d, %d bytes, equal %v", r.StatusCode, len(r.body), bytes.Equal(r.body, want))
			}
			if r.Header.Get("Docker-Content-Digest") != ld.String() {
				t.Fatalf("digest header changed: %q", r.Header.Get("Docker-Content-Digest"))
			}
		}},
		{"truncated cuts the body short of its Content-Length", fakehub.Truncated(), func(t *testing.T, c *client) {
			r, err := c.try(http.MethodGet, blobPath)
			if err == nil {
				t.Fatalf("read the whole body: %d bytes of %d", len(r.body), len(want))
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %v, want unexpected EOF", err)
			}
		}},
		{"slow still sends the right bytes", fakehub.Slow(10*time.Millisecond, time.Millisecond), func(t *testing.T, c *client) {
			r := c.do(t, http.MethodGet, blobPath)
			if r.StatusCode != 200 || !bytes.Equal(r.body, want) {
				t.Fatalf("status %d, equal %v", r.StatusCode, bytes.Equal(r.body, want))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, hub)
			hub.SetMode(tt.mode)
			defer hub.SetMode(fakehub.Normal())
			tt.check(t, c)
		})
	}

	t.Run("a digest mode touches only that digest, by tag too", func(t *testing.T) {
		c := newClient(t, hub)
		hub.SetDigestMode(md, fakehub.Status(500))
		defer hub.SetDigestMode(md, fakehub.Normal())
		if r := c.do(t, http.MethodGet, manifestPath); r.StatusCode != 500 {
			t.Fatalf("tag of the digest: %d", r.StatusCode)
		}
		if r := c.do(t, http.MethodGet, "/v2/library/redis/manifests/"+other.String()); r.StatusCode != 200 {
			t.Fatalf("other digest: %d", r.StatusCode)
		}
	})
}

// client talks raw HTTP to the hub with a token, to see statuses and headers.
type client struct {
	base  string
	token string
}

type response struct {
	*http.Response
	body []byte
}

func newClient(t *testing.T, hub *fakehub.Hub) *client {
	t.Helper()
	c := &client{base: hub.URL()}
	r := c.doNoAuth(t, http.MethodGet, "/token?service=registry.docker.io&scope=repository:library/nginx:pull")
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil || tok.Token == "" || tok.Token != tok.AccessToken || tok.ExpiresIn != 300 {
		t.Fatalf("token response %d %s: %v", r.StatusCode, r.body, err)
	}
	c.token = tok.Token
	return c
}

func (c *client) try(method, path string) (response, error) {
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		return response{}, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{resp, body}, err
}

func (c *client) do(t *testing.T, method, path string) response {
	t.Helper()
	r, err := c.try(method, path)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (c *client) doNoAuth(t *testing.T, method, path string) response {
	t.Helper()
	anon := &client{base: c.base}
	return anon.do(t, method, path)
}

func isStatus(err error, code int) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == code
}

func TestPrivateRepositoriesNeedTheirCredentialsWhileAnonymousTokensStillServePublicOnes(t *testing.T) {
	hub := fakehub.New(t, fakehub.WithPrivateRepositories("acme", "s3cret", "acme/billing"))
	img := fakehub.RandomImage(t, 1, 64, true)
	hub.Push(t, "acme/billing", "4.2", img)
	hub.Push(t, "library/nginx", "1.27", fakehub.RandomImage(t, 1, 64, true))
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()

	// Anonymous: the token is issued, public content is served, the private repository gets
	// 401 for manifests (HEAD and GET) and blobs.
	anon := newClient(t, hub)
	if r := anon.do(t, http.MethodHead, "/v2/library/nginx/manifests/1.27"); r.StatusCode != http.StatusOK {
		t.Fatalf("anonymous HEAD of a public manifest: %d", r.StatusCode)
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodHead, "/v2/acme/billing/manifests/4.2"},
		{http.MethodGet, "/v2/acme/billing/manifests/4.2"},
		{http.MethodGet, "/v2/acme/billing/blobs/" + layer.String()},
	} {
		r := anon.do(t, c.method, c.path)
		if r.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous %s %s: %d, want 401", c.method, c.path, r.StatusCode)
		}
		if ch := r.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="insufficient_scope"`) {
			t.Errorf("anonymous %s %s: challenge %q lacks insufficient_scope", c.method, c.path, ch)
		}
	}
	c := hub.Counts()
	if c.Denied["acme/billing"] != 3 || c.ManifestHEAD["acme/billing:4.2"] != 1 || c.ManifestGET["acme/billing:4.2"] != 1 {
		t.Errorf("counts after denied requests: denied %v, HEAD %v, GET %v", c.Denied, c.ManifestHEAD, c.ManifestGET)
	}
	if got := hub.RateLimitRemaining(); got != 100 {
		t.Errorf("a denied GET used the pull limit: remaining %d", got)
	}
	if _, err := crane.Digest(hub.Ref("acme/billing", "4.2"), crane.Insecure); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("anonymous crane: %v, want 401", err)
	}

	// Wrong credentials get no token at all; the right ones reach private and public content.
	wrong := crane.WithAuth(&authn.Basic{Username: "acme", Password: "nope"})
	if _, err := crane.Digest(hub.Ref("acme/billing", "4.2"), crane.Insecure, wrong); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong credentials: %v, want 401", err)
	}
	right := crane.WithAuth(&authn.Basic{Username: "acme", Password: "s3cret"})
	for _, repo := range []string{"acme/billing", "library/nginx"} {
		pulled, err := crane.Pull(hub.Ref(repo, map[string]string{"acme/billing": "4.2", "library/nginx": "1.27"}[repo]), crane.Insecure, right)
		if err != nil {
			t.Fatalf("pull %s with credentials: %v", repo, err)
		}
		fakehub.ReadAll(t, pulled)
	}

	// Made public at run time, the anonymous token is good for it.
	hub.SetPrivate("acme/billing", false)
	if r := anon.do(t, http.MethodHead, "/v2/acme/billing/manifests/4.2"); r.StatusCode != http.StatusOK {
		t.Errorf("after SetPrivate(false): anonymous HEAD %d, want 200", r.StatusCode)
	}
	hub.SetPrivate("acme/billing", true)
	if r := anon.do(t, http.MethodHead, "/v2/acme/billing/manifests/4.2"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("after SetPrivate(true): anonymous HEAD %d, want 401", r.StatusCode)
	}
}
