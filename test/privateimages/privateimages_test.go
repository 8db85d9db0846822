package privateimages

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/containerd"
	"github.com/hubcache/hubcache/test/fakehub"
)

const (
	user     = "acme"
	password = "s3cret"
	private  = "acme/billing"
	public   = "library/nginx"
)

type env struct {
	hub     *fakehub.Hub
	creds   string // Docker config directory with user:password, given to the proxy
	dataDir string
	layer   v1.Hash // a layer of the private image
	config  v1.Hash // the private image's config (what PullImage answers)
	pubCfg  v1.Hash
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{hub: fakehub.New(t, fakehub.WithPrivateRepositories(user, password, private)), dataDir: t.TempDir()}
	img := fakehub.RandomImage(t, 2, 64<<10, false)
	e.hub.Push(t, private, "4.2", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if e.layer, err = layers[0].Digest(); err != nil {
		t.Fatal(err)
	}
	if e.config, err = img.ConfigName(); err != nil {
		t.Fatal(err)
	}
	pub := fakehub.RandomImage(t, 2, 64<<10, false)
	e.hub.Push(t, public, "1.27", pub)
	if e.pubCfg, err = pub.ConfigName(); err != nil {
		t.Fatal(err)
	}
	e.creds = t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := `{"auths":{"https://index.docker.io/v1/":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(e.creds, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// proxy starts a hubcache proxy on e's data directory, with the credentials that can read
// the private repository, and returns its host and a stop function.
func (e *env) proxy(t *testing.T, opts ...server.Option) (string, func()) {
	t.Helper()
	u, err := url.Parse(e.hub.URL())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), e.dataDir, map[string]*url.URL{"docker.io": u},
		append([]server.Option{server.WithDockerConfigDir(e.creds), server.WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	stop := func() { ts.Close(); _ = srv.Close() }
	t.Cleanup(stop)
	return strings.TrimPrefix(ts.URL, "http://"), stop
}

// anonymous asks the proxy as a client without credentials would.
func anonymous(t *testing.T, method, rawURL string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// requireRefused checks that an anonymous client gets an OCI refusal, never content, for
// the private repository's manifest and blob.
func (e *env) requireRefused(t *testing.T, proxyHost string) {
	t.Helper()
	for _, path := range []string{
		"/v2/docker.io/" + private + "/manifests/4.2",
		"/v2/docker.io/" + private + "/blobs/" + e.layer.String(),
		"/v2/" + private + "/blobs/" + e.layer.String() + "?ns=docker.io",
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			status, body := anonymous(t, method, "http://"+proxyHost+path)
			if status != http.StatusForbidden || (method == http.MethodGet && !strings.Contains(body, `"DENIED"`)) {
				t.Errorf("anonymous %s %s: %d %s; want 403 DENIED", method, path, status, body)
			}
		}
	}
}

func TestAPodsPrivateImageIsPulledFromTheHubWithItsSecretAndPublicOnesThroughHubcache(t *testing.T) {
	e := newEnv(t)
	proxyHost, _ := e.proxy(t)
	d := containerd.Start(t)
	images := d.Images(t)
	ctx := context.Background()
	secret := &runtime.AuthConfig{Username: user, Password: password}

	// The webhook leaves the private image alone: the kubelet pulls it from the hub with the
	// Pod's pull secret, straight, not through hubcache.
	e.hub.Reset()
	id, err := images.PullImageWithAuth(ctx, e.hub.Ref(private, "4.2"), secret)
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Log())
	}
	if id != e.config.String() {
		t.Errorf("private pull answered %s, want the config %s", id, e.config)
	}
	// containerd resolves the tag with a HEAD, then GETs the manifest by digest.
	if c := e.hub.Counts(); c.TokenWithCredentials == 0 || c.TotalManifestGET() == 0 || len(c.Denied) != 0 {
		t.Errorf("the private image did not come from the hub with the Pod's secret: %+v", c)
	}

	// The public image is rewritten and goes through hubcache, anonymously.
	id, err = images.PullImage(ctx, proxyHost+"/docker.io/"+public+":1.27")
	if err != nil {
		t.Fatalf("%v\n%s", err, d.Log())
	}
	if id != e.pubCfg.String() {
		t.Errorf("public pull answered %s, want the config %s", id, e.pubCfg)
	}

	// Had the private image been rewritten, the kubelet's pull would be refused: hubcache
	// does not hand out what only its own credentials can read.
	if _, err := images.PullImage(ctx, proxyHost+"/docker.io/"+private+":4.2"); err == nil {
		t.Error("the private image was pulled through hubcache without credentials")
	}
	e.requireRefused(t, proxyHost)
}

func TestThePrivateRepositoryIsServedOnlyWhileAllowListed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ref := func(host string) string { return host + "/docker.io/" + private + ":4.2" }

	allowed, stop := e.proxy(t, server.WithAllowPrivate("docker.io/acme/*"))
	d := containerd.Start(t)
	if _, err := d.Images(t).PullImage(ctx, ref(allowed)); err != nil {
		t.Fatalf("allow-listed private image through hubcache: %v\n%s", err, d.Log())
	}
	stop()

	// Same cache, allow-list removed: the cached manifest and blobs are refused too, and a
	// fresh node cannot pull the image through hubcache.
	plain, _ := e.proxy(t)
	e.hub.Reset()
	e.requireRefused(t, plain)
	fresh := containerd.Start(t)
	if _, err := fresh.Images(t).PullImage(ctx, ref(plain)); err == nil {
		t.Error("the private image was pulled from the cache after its allow-list entry was removed")
	}
	if c := e.hub.Counts(); c.TotalManifestGET() != 0 || c.TotalBlobGET() != 0 || c.TokenWithCredentials != 0 {
		t.Errorf("refusals used the proxy's credentials upstream: %+v", c)
	}
}
