package integration

import (
	"net/http"
	"strings"
	"testing"
)

// Requests that try to escape the path grammar, name something that cannot exist, reach a
// registry that is not configured, or write, are refused with a 4xx before anything is asked
// of upstream.
func TestHostileRequestsAreRefusedWithoutTouchingUpstream(t *testing.T) {
	e := newEnv(t)
	pushFixture(t, e.hub, "library/nginx", "latest", imageKinds[0])
	hubHost := strings.TrimPrefix(e.hub.URL(), "http://")
	validDigest := "sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		name   string
		method string
		path   string // after the proxy's base URL, sent as written
	}{
		{name: "a dot-dot segment in the repository", path: "/v2/docker.io/library/../secret/manifests/latest"},
		{name: "a dot-dot segment replacing the registry", path: "/v2/../v2/docker.io/library/nginx/manifests/latest"},
		{name: "an encoded dot-dot segment", path: "/v2/docker.io/library/%2e%2e/manifests/latest"},
		{name: "an encoded slash in the repository", path: "/v2/docker.io/library%2Fnginx/manifests/latest"},
		{name: "an encoded slash walking out of the repository", path: "/v2/docker.io/library/nginx%2F..%2F..%2Fx/manifests/latest"},
		{name: "an encoded slash in the tag", path: "/v2/docker.io/library/nginx/manifests/latest%2F..%2Fx"},
		{name: "a name over 255 characters", path: "/v2/docker.io/library/" + strings.Repeat("a", 300) + "/manifests/latest"},
		{name: "a tag over 128 characters", path: "/v2/docker.io/library/nginx/manifests/" + strings.Repeat("t", 129)},
		{name: "a tag starting with a dash", path: "/v2/docker.io/library/nginx/manifests/-latest"},
		{name: "an upper-case repository", path: "/v2/docker.io/Library/Nginx/manifests/latest"},
		{name: "a blob digest with a short hex", path: "/v2/docker.io/library/nginx/blobs/sha256:" + strings.Repeat("a", 63)},
		{name: "a blob digest with upper-case hex", path: "/v2/docker.io/library/nginx/blobs/sha256:" + strings.Repeat("A", 64)},
		{name: "a blob digest with non-hex characters", path: "/v2/docker.io/library/nginx/blobs/sha256:" + strings.Repeat("z", 64)},
		{name: "a blob digest of an unknown algorithm", path: "/v2/docker.io/library/nginx/blobs/md5:d41d8cd98f00b204e9800998ecf8427e"},
		{name: "a blob digest with no algorithm", path: "/v2/docker.io/library/nginx/blobs/" + strings.Repeat("a", 64)},
		{name: "a manifest digest with non-hex characters", path: "/v2/docker.io/library/nginx/manifests/sha256:" + strings.Repeat("g", 64)},
		{name: "a registry that is not configured", path: "/v2/ghcr.io/library/nginx/manifests/latest"},
		{name: "the hub's own address as a registry", path: "/v2/" + hubHost + "/library/nginx/manifests/latest"},
		{name: "a metadata address as a registry", path: "/v2/169.254.169.254/latest/manifests/latest"},
		{name: "a mirror request for a registry that is not configured", path: "/v2/library/nginx/manifests/latest?ns=quay.io"},
		{name: "a push of a manifest", method: http.MethodPut, path: "/v2/docker.io/library/nginx/manifests/latest"},
		{name: "a blob upload", method: http.MethodPost, path: "/v2/docker.io/library/nginx/blobs/uploads/"},
		{name: "a manifest delete", method: http.MethodDelete, path: "/v2/docker.io/library/nginx/manifests/" + validDigest},
		{name: "a blob delete", method: http.MethodDelete, path: "/v2/docker.io/library/nginx/blobs/" + validDigest},
		{name: "a blob upload chunk", method: http.MethodPatch, path: "/v2/docker.io/library/nginx/blobs/uploads/1234"},
		{name: "a path outside the API", path: "/v3/docker.io/library/nginx/manifests/latest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			e.hub.Reset()
			resp, body := do(t, method, e.proxy.URL+tc.path)
			t.Logf("%s %s: %d %s", method, tc.path, resp.StatusCode, ociCode(body))
			if resp.StatusCode < 400 || resp.StatusCode > 499 {
				t.Errorf("%s %s: status %d (%s), want 4xx", method, tc.path, resp.StatusCode, truncate(body))
			}
			requireUpstreamUntouched(t, e.hub)
		})
	}
}

// An upstream manifest over the proxy's size cap fails cleanly (no 5xx from a crash, no
// partial body) and is not stored: asking again goes upstream again, and nothing it names
// is fetched.
func TestOversizedUpstreamManifestFailsCleanly(t *testing.T) {
	bin := crane(t)
	e := newEnv(t, withMaxManifestSize(256))
	fx := pushFixture(t, e.hub, "library/huge", "1.0", imageKinds[0])
	if len(fx.manifest) <= 256 {
		t.Fatalf("fixture manifest is only %d bytes; the test needs one over the cap", len(fx.manifest))
	}
	for i, path := range []string{"manifests/" + fx.tag, "manifests/" + fx.digest.String(), "manifests/" + fx.tag} {
		resp, body := do(t, http.MethodGet, e.proxy.Path(fx.repo, path))
		requireOCIError(t, "oversized manifest "+path, resp, body, http.StatusBadGateway, "MANIFEST_INVALID")
		if n := e.hub.Counts().TotalManifestGET(); n < i+1 {
			t.Errorf("after %d requests upstream saw %d manifest GETs: the oversized manifest was kept", i+1, n)
		}
	}
	if _, err := run(t, bin, "pull", "--format=oci", e.proxy.Ref(fx.repo, fx.tag), t.TempDir()); err == nil {
		t.Error("crane pulled an image whose manifest is over the cap")
	}
	if n := e.hub.Counts().TotalBlobGET(); n != 0 {
		t.Errorf("upstream saw %d blob GETs for an image whose manifest was refused", n)
	}
}
