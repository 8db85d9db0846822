package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hubcache/hubcache/test/fakehub"
)

// Fifty clients asking at once for one cold 64 MiB blob cause exactly one upstream GET, and
// every client gets the whole, correct body.
func TestFiftyConcurrentColdRequestsMakeOneUpstreamFetch(t *testing.T) {
	const clients = 50
	e := newEnv(t)
	// The blob is only fetched over HTTP, never unpacked: 64 MiB of random bytes as they are,
	// without the seconds gzip would take to compress them.
	blob := make([]byte, 64<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(blob)
	layer := static.NewLayer(blob, types.DockerLayer)
	img := must(mutate.AppendLayers(empty.Image, layer))
	e.hub.Push(t, "library/big", "1.0", img)
	d := must(layer.Digest())
	size := must(layer.Size())
	// Upstream holds its headers back a little so that every client arrives while the fill
	// has not even started streaming, then streams in 32 KiB chunks.
	e.hub.SetDigestMode(d, fakehub.Slow(300*time.Millisecond, 0))

	url := e.proxy.Path("library/big", "blobs/"+d.String())
	start := make(chan struct{})
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- fetchAndVerify(url, d.Hex, size, i)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := e.hub.Counts().BlobGET[d.String()]; n != 1 {
		t.Errorf("upstream saw %d GETs for the blob, want exactly 1", n)
	}
}

// fetchAndVerify streams one body through sha256 (50 copies of 64 MiB need not sit in memory).
func fetchAndVerify(url, wantHex string, wantSize int64, client int) error {
	resp, err := rawClient.Get(url)
	if err != nil {
		return fmt.Errorf("client %d: %w", client, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("client %d: status %d", client, resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fmt.Errorf("client %d: body after %d bytes: %w", client, n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != wantSize || got != wantHex {
		return fmt.Errorf("client %d: got %d bytes sha256:%s, want %d bytes sha256:%s", client, n, got, wantSize, wantHex)
	}
	return nil
}
