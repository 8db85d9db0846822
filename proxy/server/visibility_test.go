package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

// privateHub is a hub with a public library/nginx and a private acme/billing readable with
// acme:s3cret, and a Docker config directory holding those credentials for the proxy.
func privateHub(t *testing.T) (*fakehub.Hub, string) {
	t.Helper()
	hub := fakehub.New(t, fakehub.WithPrivateRepositories("acme", "s3cret", "acme/billing"))
	hub.Push(t, "library/nginx", "1.27", fakehub.RandomImage(t, 1, 1000, false))
	hub.Push(t, "acme/billing", "4.2", fakehub.RandomImage(t, 1, 1000, false))
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("acme:s3cret"))
	cfg := `{"auths":{"https://index.docker.io/v1/":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return hub, dir
}

func visibilityOf(t *testing.T, host string, repos ...string) (int, string) {
	t.Helper()
	q := url.Values{"repository": repos}
	resp, body, err := get(t, "http://"+host+"/hubcache/v1/visibility?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func TestTheProxyServesOnlyWhatAnonymousUpstreamServes(t *testing.T) {
	hub, creds := privateHub(t)
	_, host := start(t, hub, server.WithDockerConfigDir(creds))

	// Public content is served, fetched with the proxy's credentials (they raise the limit).
	pullAll(t, host+"/docker.io/library/nginx:1.27")
	if c := hub.Counts(); c.TokenWithCredentials == 0 {
		t.Errorf("the proxy did not use its credentials for public content: %+v", c)
	}

	// The private repository is refused for manifests and blobs, never fetched.
	hub.Reset()
	layer := fakehub.RandomImage(t, 1, 10, false) // any digest: the refusal comes first
	ld, _ := layer.Digest()
	for _, path := range []string{
		"/v2/docker.io/acme/billing/manifests/4.2",
		"/v2/acme/billing/manifests/4.2",
		"/v2/docker.io/acme/billing/blobs/" + ld.String(),
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(method, "http://"+host+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: status %d, want 403 DENIED", method, path, resp.StatusCode)
			}
		}
	}
	c := hub.Counts()
	if c.TotalManifestGET() != 0 || c.TotalBlobGET() != 0 {
		t.Errorf("a refused repository was fetched: manifest GETs %v, blob GETs %v", c.ManifestGET, c.BlobGET)
	}
	// One anonymous check for six requests; go-containerregistry's transport sends its HEAD
	// once more with a fresh token after the first 401, so the hub sees two.
	if c.ManifestHEAD["acme/billing:latest"] != 2 || c.Denied["acme/billing"] != 2 {
		t.Errorf("anonymous checks: HEADs %v, denied %v; want one check (two HEADs) of acme/billing:latest for six requests", c.ManifestHEAD, c.Denied)
	}

	status, body := visibilityOf(t, host, "docker.io/library/nginx", "docker.io/acme/billing")
	want := `{"repositories":[{"repository":"docker.io/library/nginx","visibility":"public","served":true},{"repository":"docker.io/acme/billing","visibility":"private","served":false}]}`
	if status != http.StatusOK || body != want {
		t.Errorf("visibility endpoint: %d %s\nwant 200 %s", status, body, want)
	}
}

func TestAllowListedPrivateRepositoriesAreServedAndRefusedAgainOnceRemoved(t *testing.T) {
	hub, creds := privateHub(t)
	dataDir := t.TempDir()
	u, _ := url.Parse(hub.URL())
	open := func(opts ...server.Option) string {
		srv, err := server.New(t.Context(), dataDir, map[string]*url.URL{"docker.io": u},
			append([]server.Option{server.WithDockerConfigDir(creds)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		host := serve(t, srv)
		t.Cleanup(func() { _ = srv.Close() })
		return host
	}

	allowed := open(server.WithAllowPrivate("docker.io/acme/*"))
	d := pullAll(t, allowed+"/docker.io/acme/billing:4.2")
	status, body := visibilityOf(t, allowed, "docker.io/acme/billing")
	if status != http.StatusOK || !strings.Contains(body, `"visibility":"private","served":true`) {
		t.Errorf("allow-listed: visibility %d %s", status, body)
	}

	// Same data directory, allow-list removed: the cached manifest is refused too.
	plain := open()
	for _, path := range []string{
		"/v2/docker.io/acme/billing/manifests/4.2",
		fmt.Sprintf("/v2/docker.io/acme/billing/manifests/%s", d),
	} {
		resp, body, err := get(t, "http://"+plain+path)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "DENIED") {
			t.Errorf("cached %s after the allow-list went: %d %s, want 403 DENIED", path, resp.StatusCode, body)
		}
	}
}

func TestTheVisibilityEndpointRejectsBadRequests(t *testing.T) {
	hub := fakehub.New(t)
	_, host := start(t, hub)
	tooMany := make([]string, 65)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("docker.io/library/r%d", i)
	}
	tests := []struct {
		name  string
		repos []string
		code  string
	}{
		{"no repository is a 400", nil, "NAME_INVALID"},
		{"an invalid name is a 400 NAME_INVALID", []string{"docker.io/library/nginx", "docker.io/UPPER/case"}, "NAME_INVALID"},
		{"more than 64 names is a 400", tooMany, "UNSUPPORTED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := visibilityOf(t, host, tc.repos...)
			var e struct {
				Errors []struct{ Code string } `json:"errors"`
			}
			if status != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != tc.code {
				t.Errorf("got %d %s, want 400 with code %s", status, body, tc.code)
			}
		})
	}
	if c := hub.Counts(); c.TotalManifestHEAD() != 0 {
		t.Errorf("bad requests reached upstream: %v", c.ManifestHEAD)
	}
	t.Run("64 names are answered, an unreachable upstream as unknown", func(t *testing.T) {
		hub.SetMode(fakehub.Down())
		status, body := visibilityOf(t, host, tooMany[:64]...)
		var r struct {
			Repositories []struct {
				Repository, Visibility string
				Served                 bool
			}
		}
		if status != http.StatusOK || json.Unmarshal([]byte(body), &r) != nil || len(r.Repositories) != 64 {
			t.Fatalf("got %d %s", status, body)
		}
		for i, a := range r.Repositories {
			if a.Repository != tooMany[i] || a.Visibility != "unknown" || a.Served {
				t.Errorf("answer %d = %+v, want %s unknown, not served", i, a, tooMany[i])
			}
		}
	})
}

// serve runs srv's API on 127.0.0.1 and returns its host.
func serve(t *testing.T, srv *server.Server) string {
	t.Helper()
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://")
}
