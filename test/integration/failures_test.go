package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hubcache/hubcache/test/fakehub"
)

// When Docker Hub is down, failing, rate-limiting or refusing us, what the cache holds still
// pulls (stale-if-error), and what it does not hold fails with a status and an OCI code that
// say why. When the hub recovers, the missing content pulls again.
func TestCachedContentPullsWhileUpstreamFails(t *testing.T) {
	bin := crane(t)
	for _, tc := range []struct {
		name       string
		mode       fakehub.Mode
		status     int
		code       string
		retryAfter string
	}{
		{name: "upstream down", mode: fakehub.Down(), status: http.StatusServiceUnavailable, code: "UNAVAILABLE"},
		{name: "upstream answers 500", mode: fakehub.Status(http.StatusInternalServerError), status: http.StatusServiceUnavailable, code: "UNAVAILABLE"},
		{name: "upstream rate-limits with 429", mode: fakehub.RateLimited(42 * time.Second), status: http.StatusTooManyRequests, code: "TOOMANYREQUESTS", retryAfter: "42"},
		{name: "upstream refuses access with 401", mode: fakehub.Unauthorized(), status: http.StatusForbidden, code: "DENIED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A zero tag TTL makes every tag pull revalidate upstream, so the stale path runs.
			e := newEnv(t, withTagTTL(0))
			cached := pushFixture(t, e.hub, "library/cached", "1.0", imageKinds[2])
			missing := pushFixture(t, e.hub, "library/missing", "1.0", imageKinds[0])
			mustRun(t, bin, "pull", "--format=oci", e.proxy.Ref(cached.repo, cached.tag), t.TempDir())

			e.hub.SetMode(tc.mode)
			for _, ref := range []string{e.proxy.Ref(cached.repo, cached.tag), e.proxy.DigestRef(cached.repo, cached.digest)} {
				dir := t.TempDir()
				if _, err := run(t, bin, "pull", "--format=oci", ref, dir); err != nil {
					t.Errorf("cached %s does not pull while upstream fails: %v", ref, err)
					continue
				}
				checkOCILayout(t, dir, cached)
			}

			for what, url := range map[string]string{
				"uncached tag":    e.proxy.Path(missing.repo, "manifests/"+missing.tag),
				"uncached digest": e.proxy.Path(missing.repo, "manifests/"+missing.digest.String()),
				"uncached blob":   e.proxy.Path(missing.repo, "blobs/"+missing.blobs[1].String()),
			} {
				resp, body := do(t, http.MethodGet, url)
				requireOCIError(t, what, resp, body, tc.status, tc.code)
				if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
					t.Errorf("%s: Retry-After %q, want %q", what, got, tc.retryAfter)
				}
			}
			_, err := run(t, bin, "pull", "--format=oci", e.proxy.Ref(missing.repo, missing.tag), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.code) {
				t.Errorf("crane pull of uncached content: %v, want a failure naming %s", err, tc.code)
			}

			e.hub.SetMode(fakehub.Normal())
			dir := t.TempDir()
			mustRun(t, bin, "pull", "--format=oci", e.proxy.Ref(missing.repo, missing.tag), dir)
			checkOCILayout(t, dir, missing)
		})
	}
}

// Damaged bytes from upstream — a flipped byte or a body cut short — are never cached: the
// client's pull fails visibly, and once upstream serves good bytes the pull succeeds with the
// right digest, fetched afresh.
func TestDamagedUpstreamContentIsNeverCached(t *testing.T) {
	bin := crane(t)
	for _, tc := range []struct {
		name  string
		mode  fakehub.Mode
		layer bool // damage a layer rather than the manifest
	}{
		{name: "a corrupt manifest", mode: fakehub.Corrupt()},
		{name: "a truncated manifest", mode: fakehub.Truncated()},
		{name: "a corrupt blob", mode: fakehub.Corrupt(), layer: true},
		{name: "a truncated blob", mode: fakehub.Truncated(), layer: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fx := pushFixture(t, e.hub, "library/damaged", "1.0", imageKinds[0])
			damaged := fx.digest
			url := e.proxy.Path(fx.repo, "manifests/"+fx.digest.String())
			if tc.layer {
				damaged = fx.blobs[1]
				url = e.proxy.Path(fx.repo, "blobs/"+damaged.String())
			}
			e.hub.SetDigestMode(damaged, tc.mode)

			// Twice: a damaged first answer must not have been kept for the second.
			for i := range 2 {
				if status, body, err := get(url); err == nil && status == http.StatusOK {
					t.Errorf("request %d for damaged %s: complete 200 with %d bytes, want a failure", i+1, damaged, len(body))
				}
			}
			if n := e.hub.Counts().ManifestGET["library/damaged@"+damaged.String()] + e.hub.Counts().BlobGET[damaged.String()]; n < 2 {
				t.Errorf("upstream saw %d GETs for %s; the second request must go upstream again", n, damaged)
			}
			if _, err := run(t, bin, "pull", "--format=oci", e.proxy.Ref(fx.repo, fx.tag), t.TempDir()); err == nil {
				t.Error("crane pulled an image whose upstream bytes are damaged")
			}

			e.hub.SetDigestMode(damaged, fakehub.Normal())
			e.hub.Reset()
			dir := t.TempDir()
			mustRun(t, bin, "pull", "--format=oci", e.proxy.Ref(fx.repo, fx.tag), dir)
			checkOCILayout(t, dir, fx)
			c := e.hub.Counts()
			if c.ManifestGET["library/damaged@"+damaged.String()]+c.ManifestGET["library/damaged:1.0"]+c.BlobGET[damaged.String()] == 0 {
				t.Errorf("after recovery %s was not fetched again: damaged bytes were kept", damaged)
			}
		})
	}
}

// get reads a whole response, reporting a body that ends early as an error (what a client
// sees when the proxy aborts a stream).
func get(url string) (int, []byte, error) {
	resp, err := rawClient.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
