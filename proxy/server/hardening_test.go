package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Error(err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestTenGETsOfAMissingTagMakeOneUpstreamRequest(t *testing.T) {
	hub := fakehub.New(t)
	hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 1, 1000, true))
	_, host := start(t, hub, server.WithTagTTL(0), server.WithNegativeTTL(time.Hour))
	url := "http://" + host + "/v2/docker.io/library/app/manifests/missing"

	var wg sync.WaitGroup
	for range 5 { // concurrent
		wg.Go(func() {
			if code := getStatus(t, url); code != http.StatusNotFound {
				t.Errorf("GET of a missing tag = %d, want 404", code)
			}
		})
	}
	wg.Wait()
	for range 5 { // one after the other
		if code := getStatus(t, url); code != http.StatusNotFound {
			t.Errorf("GET of a missing tag = %d, want 404", code)
		}
	}
	c := hub.Counts()
	// Only requests for the missing tag count (the visibility probe asks for another tag).
	if n := c.ManifestGET["library/app:missing"] + c.ManifestHEAD["library/app:missing"]; n != 1 {
		t.Fatalf("ten GETs of a missing tag made %d upstream manifest requests, want 1", n)
	}
	// A tag that exists is not affected.
	if code := getStatus(t, "http://"+host+"/v2/docker.io/library/app/manifests/v1"); code != http.StatusOK {
		t.Fatalf("GET of an existing tag = %d", code)
	}
}

func TestAMissingBlobIsAskedUpstreamOncePerTTL(t *testing.T) {
	hub := fakehub.New(t)
	hub.Push(t, "library/app", "v1", fakehub.RandomImage(t, 1, 1000, true))
	_, host := start(t, hub, server.WithNegativeTTL(time.Hour))
	url := "http://" + host + "/v2/docker.io/library/app/blobs/sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for range 10 {
		if code := getStatus(t, url); code != http.StatusNotFound {
			t.Errorf("GET of a missing blob = %d, want 404", code)
		}
	}
	if n := hub.Counts().TotalBlobGET(); n != 1 {
		t.Fatalf("ten GETs of a missing blob made %d upstream blob GETs, want 1", n)
	}
}

func TestAHeadWithoutSizeDoesNotLinkAStoredBlobToAnotherRepository(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 1, 100_000, true)
	hub.Push(t, "library/app", "v1", img)
	_, host := start(t, hub)
	pullAll(t, host+"/docker.io/library/app:v1")
	layer := fakehub.FirstLayer(t, img)
	// acme/other does not have the blob, but its upstream answers HEAD 200 without a size.
	hub.SetDigestMode(layer, fakehub.HeadWithoutLength())
	before := hub.Counts().TotalBlobGET()
	if code := getStatus(t, "http://"+host+"/v2/docker.io/acme/other/blobs/"+layer.String()); code == http.StatusOK {
		t.Fatalf("GET of a blob another repository cached = 200 after a HEAD without size")
	}
	if n := hub.Counts().TotalBlobGET() - before; n != 1 {
		t.Fatalf("upstream blob GETs = %d, want 1 (the blob is fetched and verified instead)", n)
	}
}

// The same rule holds while the blob is still being filled for the other repository: a fill
// in progress is joined by another repository only with a confirming HEAD (size and all).
// Without one, that repository gets its own fill once the first has ended.
func TestAHeadWithoutSizeDoesNotJoinAFillOfAnotherRepository(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 1, 200_000, true)
	hub.Push(t, "library/app", "v1", img)
	_, host := start(t, hub)
	layer := fakehub.FirstLayer(t, img)
	// A fill of library/app that lasts a second or so.
	hub.SetDigestMode(layer, fakehub.Slow(0, 20*time.Millisecond))
	first := make(chan int, 1)
	go func() { first <- getStatus(t, "http://"+host+"/v2/docker.io/library/app/blobs/"+layer.String()) }()
	deadline := time.Now().Add(30 * time.Second)
	for hub.Counts().TotalBlobGET() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first fill never reached upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// acme/other does not have the blob; its upstream answers HEAD 200 without a size.
	hub.SetDigestMode(layer, fakehub.HeadWithoutLength())
	if code := getStatus(t, "http://"+host+"/v2/docker.io/acme/other/blobs/"+layer.String()); code == http.StatusOK {
		t.Fatalf("GET of a blob being filled for another repository = 200 after a HEAD without size")
	}
	if code := <-first; code != http.StatusOK {
		t.Fatalf("the first repository's GET = %d", code)
	}
	if n := hub.Counts().TotalBlobGET(); n != 2 {
		t.Fatalf("upstream blob GETs = %d, want 2 (one fill per repository)", n)
	}
}

func TestUpstreamRedirectsToLoopbackAreRefusedUnlessATestAllowsThem(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 1, 50_000, true)
	hub.Push(t, "library/app", "v1", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	// An "internal" service on loopback that the hostile upstream points the proxy at.
	var internalHits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		internalHits.Add(1)
		_, _ = w.Write(body)
	}))
	t.Cleanup(internal.Close)
	hub.SetDigestMode(layer, fakehub.Redirect(internal.URL))
	path := "/v2/docker.io/library/app/blobs/" + layer.String()

	_, host := start(t, hub)
	if code := getStatus(t, "http://"+host+path); code == http.StatusOK {
		t.Fatal("a redirect to a loopback http address was followed")
	}
	if n := internalHits.Load(); n != 0 {
		t.Fatalf("the internal service was reached %d times", n)
	}

	_, allowed := start(t, hub, server.WithLoopbackRedirects())
	if code := getStatus(t, "http://"+allowed+path); code != http.StatusOK {
		t.Fatalf("with loopback redirects allowed: %d, want 200", code)
	}
	if n := internalHits.Load(); n != 1 {
		t.Fatalf("the redirect target was reached %d times, want 1", n)
	}
}

// TestAStoredFileWrittenWhileItIsBeingSentIsNeverAComplete200 damages a trusted layer's file
// (one byte, in place) while a slow client is being sent it: the send is cut before its end.
func TestAStoredFileWrittenWhileItIsBeingSentIsNeverAComplete200(t *testing.T) {
	hub := fakehub.New(t)
	img := fakehub.RandomImage(t, 1, 32<<20, true)
	hub.Push(t, "library/app", "v1", img)
	blobs := t.TempDir()
	_, host := start(t, hub, server.WithBlobStoreURL("file://"+blobs))
	pullAll(t, host+"/docker.io/library/app:v1")
	layer := fakehub.FirstLayer(t, img)
	url := "http://" + host + "/v2/docker.io/library/app/blobs/" + layer.String()

	// Older than the racy window, hashed once: later reads are trusted (sendfile).
	time.Sleep(2100 * time.Millisecond)
	for range 2 {
		if code := getStatus(t, url); code != http.StatusOK {
			t.Fatalf("warm GET = %d", code)
		}
	}

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(blobs, "blobs", "sha256", layer.Hex[:2], layer.Hex)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 30<<20); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, 30<<20); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the damaged file was sent as a complete 200 (%d more bytes)", len(rest))
	}
	// Trust dropped: the next GET hashes, cuts and drops it; the one after fetches it again.
	if _, body, err := get(t, url); err == nil {
		t.Fatalf("the GET after the cut got a complete body of %d bytes", len(body))
	}
	if _, body, err := get(t, url); err != nil || sha256Hex(body) != layer.Hex {
		t.Fatalf("the GET after the drop: %d bytes, %v; want the layer", len(body), err)
	}
}
