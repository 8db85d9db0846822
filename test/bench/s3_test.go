package bench

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hubcache/hubcache/test/bench/peer"
	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/s3server"
)

// BenchmarkWarmS3 (rows 03a and 03b) serves a cached 256 MiB blob kept on MinIO to one
// client. The sides, run i of each back to back: a direct GET of the object from MinIO (a
// presigned URL: the limit), the hubcache proxy binary streaming it from MinIO, hubcache with
// --s3-redirect (the client follows the 307 to MinIO), and distribution v3 on the same MinIO
// (streamed through it, redirects off).
func BenchmarkWarmS3(b *testing.B) {
	hub := fakehub.New(b)
	d := pushBlob(b, hub, "library/s3", "v1", blobSize, 3)
	s3 := s3server.Start(b, s3server.MinIO)
	path := "/v2/docker.io/library/s3/blobs/" + d.String()
	streamed := startProxy(b, hub.URL(), b.TempDir(), s3.Env(), "--blob-store", s3.URL("hubcache"))
	verified(b, streamed.base+path, d) // the cold fill writes the object
	time.Sleep(racyWindow)             // a version is trusted once it is older than this when hashed
	verified(b, streamed.base+path, d) // the first warm read: hashed; later ones within --verify-interval are not
	redirected := startProxy(b, hub.URL(), b.TempDir(), s3.Env(), "--blob-store", s3.URL("hubcache"), "--s3-redirect")
	verified(b, redirected.base+path, d) // links the stored object in this proxy's metadata
	direct := presignedURL(b, redirected.base+path)
	verified(b, direct, d)
	var peerURL string
	if peerBinary() {
		peerURL = peer.Start(b, peer.Config{Upstream: hub.URL(), S3: s3, Prefix: "distribution"}) + "/v2/library/s3/blobs/" + d.String()
		verified(b, peerURL, d)
	}

	for b.Loop() {
		var limit, hcs, redirs, peers table.Samples
		measure := func(url string) float64 {
			t, err := get(url, blobSize)
			if err != nil {
				b.Fatal(err)
			}
			return mbps(t.n, t.last)
		}
		for range runs {
			limit = append(limit, measure(direct))
			hcs = append(hcs, measure(streamed.base+path))
			redirs = append(redirs, measure(redirected.base+path))
			if peerURL != "" {
				peers = append(peers, measure(peerURL))
			}
		}
		toLimit := table.Ratios(hcs, limit)
		row := table.Row{
			ID:       "03a-warm-s3-streamed",
			Measured: "warm serve on S3 (MinIO), 256 MiB, 1 client, streamed through hubcache",
			Compared: "a direct MinIO GET of the same object (the limit); distribution v3 on the same MinIO",
			Result:   fmt.Sprintf("%.2f× the direct GET", toLimit.Median()),
			Spread:   toLimit.Range(2),
			Runs:     len(hcs),
			Target:   "≥ 0.9× the direct GET",
			Verdict:  table.Check(toLimit.Median() >= 0.9),
			Notes:    fmt.Sprintf("MB/s (medians): hubcache %.0f, direct GET %.0f", hcs.Median(), limit.Median()),
		}
		if len(peers) > 0 {
			toPeer := table.Ratios(hcs, peers)
			row.Result += fmt.Sprintf(", %.2f× distribution", toPeer.Median())
			row.Spread += "; " + toPeer.Range(2)
			row.Notes += fmt.Sprintf(", distribution %.0f", peers.Median())
		} else {
			row.Notes += "; distribution not built (HUBCACHE_DISTRIBUTION unset)"
		}
		table.Record(b, row)
		redirToLimit := table.Ratios(redirs, limit)
		table.Record(b, table.Row{
			ID:       "03b-warm-s3-redirect",
			Measured: "warm serve on S3 (MinIO), 256 MiB, 1 client, hubcache with --s3-redirect (the client follows the 307)",
			Compared: "a direct MinIO GET of the same object (the limit)",
			Result:   fmt.Sprintf("%.2f× the direct GET", redirToLimit.Median()),
			Spread:   redirToLimit.Range(2),
			Runs:     len(redirs),
			Target:   "≥ 0.9× the direct GET",
			Verdict:  table.Check(redirToLimit.Median() >= 0.9),
			Notes:    fmt.Sprintf("MB/s (medians): hubcache redirect %.0f, direct GET %.0f", redirs.Median(), limit.Median()),
		})
	}
}

// presignedURL asks a --s3-redirect proxy for url without following the redirect and returns
// where it points: a presigned GET of the object on MinIO.
func presignedURL(b *testing.B, url string) string {
	b.Helper()
	c := &http.Client{Transport: client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := c.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || loc == "" {
		b.Fatal(errors.New("the --s3-redirect proxy did not redirect: " + resp.Status))
	}
	return loc
}
