package node_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/node"
	"github.com/hubcache/hubcache/test/fakehub"
)

// getFull GETs url and says whether a complete 200 with want arrived.
func getFull(t *testing.T, url string) (status int, body []byte, err error) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func TestTheFallbackCutsABlobWhoseBytesDoNotMatchItsDigest(t *testing.T) {
	f := newFixture(t)
	f.proxy.stop()
	n := startNode(t, f.proxy.URL(), f.upstreams(t), node.WithBreaker(1, time.Hour))
	f.hub.SetMode(fakehub.Corrupt())
	status, body, err := getFull(t, n.url+"/v2/docker.io/library/nginx/blobs/"+f.layer.String())
	if err == nil && status == http.StatusOK {
		t.Fatalf("a corrupt blob came through the fallback as a complete 200 (%d bytes, right bytes: %v)", len(body), bytes.Equal(body, f.layerRaw))
	}
}

func TestTheFallbackDoesNotFollowRedirectsToLoopback(t *testing.T) {
	f := newFixture(t)
	f.proxy.stop()
	var hits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write(f.layerRaw)
	}))
	t.Cleanup(internal.Close)
	f.hub.SetDigestMode(f.layer, fakehub.Redirect(internal.URL))
	path := "/v2/docker.io/library/nginx/blobs/" + f.layer.String()

	n := startNode(t, f.proxy.URL(), f.upstreams(t), node.WithBreaker(1, time.Hour))
	if status, _, err := getFull(t, n.url+path); err == nil && status == http.StatusOK {
		t.Fatal("the fallback followed a redirect to a loopback http address")
	}
	if hits.Load() != 0 {
		t.Fatalf("the internal service was reached %d times", hits.Load())
	}

	allowed := startNode(t, f.proxy.URL(), f.upstreams(t), node.WithBreaker(1, time.Hour), node.WithLoopbackRedirects())
	if status, body, err := getFull(t, allowed.url+path); err != nil || status != http.StatusOK || !bytes.Equal(body, f.layerRaw) {
		t.Fatalf("with loopback redirects allowed: %d, %v", status, err)
	}
}
