package storage

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/server"
	"github.com/hubcache/hubcache/test/fakehub"
)

// getBlob GETs a blob through the proxy and reports the status, the bytes received and
// whether the body arrived complete (a cut connection is an error while reading).
func getBlob(t *testing.T, p *proxy, repo string, d v1.Hash) (int, []byte, error) {
	t.Helper()
	resp, err := http.Get(p.http.URL + "/v2/docker.io/" + repo + "/blobs/" + d.String())
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// grepLines returns the lines of text that contain substr.
func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// flipByte changes one byte in the middle of b (same length).
func flipByte(b []byte) []byte {
	out := bytes.Clone(b)
	out[len(out)/2] ^= 0xff
	return out
}

func TestADamagedBlobAtRestIsCutDroppedAndFetchedAgain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stores func(t *testing.T) (opts []server.Option, damage func(t *testing.T, d v1.Hash))
	}{
		{
			name: "file store and SQLite: one byte flipped on disk",
			stores: func(t *testing.T) ([]server.Option, func(*testing.T, v1.Hash)) {
				dir := t.TempDir()
				return []server.Option{server.WithBlobStoreURL("file://" + dir)}, func(t *testing.T, d v1.Hash) {
					path := filepath.Join(dir, "blobs", "sha256", d.Hex[:2], d.Hex)
					b, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, flipByte(b), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			},
		},
		{
			name: "MinIO and Postgres: one byte flipped in the object",
			stores: func(t *testing.T) ([]server.Option, func(*testing.T, v1.Hash)) {
				minio := startMinIO(t)
				dsn := freshSchema(t, baseDSN())
				opts := []server.Option{server.WithBlobStoreURL(minio.URL("cache")), server.WithMetadataURL(dsn)}
				return opts, func(t *testing.T, d v1.Hash) {
					key := "cache/blobs/sha256/" + d.Hex[:2] + "/" + d.Hex
					c := minio.Client()
					out, err := c.GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String(minio.Bucket), Key: aws.String(key)})
					if err != nil {
						t.Fatal(err)
					}
					b, err := io.ReadAll(out.Body)
					out.Body.Close()
					if err != nil {
						t.Fatal(err)
					}
					if _, err := c.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String(minio.Bucket), Key: aws.String(key), Body: bytes.NewReader(flipByte(b))}); err != nil {
						t.Fatal(err)
					}
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := fakehub.New(t)
			app := pushImage(t, hub, "library/app", "v1", 1, 3<<20)
			opts, damage := tc.stores(t)
			p := startProxy(t, hub, opts...)
			if err := p.pull(app.ref); err != nil {
				t.Fatalf("cold pull: %v", err)
			}
			layer := app.layers[1]
			// A stored object is trusted only once it is older than 2 s when a read hashes it
			// (coarse file and S3 timestamps).
			time.Sleep(2100 * time.Millisecond)
			// Two warm reads: the first hashes the stored blob, the second trusts it
			// (--verify-interval). The damage below must be caught even so: it gives the file
			// or the object a new version.
			for i := range 2 {
				if status, body, err := getBlob(t, p, "library/app", layer); err != nil || status != http.StatusOK || sha(body) != layer {
					t.Fatalf("warm GET %d: status %d, %d bytes, error %v", i, status, len(body), err)
				}
			}
			if _, metrics := p.opsGet(t, "/metrics"); !strings.Contains(metrics, `hubcache_blob_whole_reads_total{verification="trusted"} `) ||
				strings.Contains(metrics, `hubcache_blob_whole_reads_total{verification="trusted"} 0`) {
				t.Fatalf("the second warm read was not trusted:\n%s", grepLines(metrics, "hubcache_blob_whole_reads_total"))
			}
			damage(t, layer)
			before := hub.Counts().TotalBlobGET()

			status, body, err := getBlob(t, p, "library/app", layer)
			if err == nil && status == http.StatusOK && sha(body) != layer {
				t.Fatalf("the damaged blob was served as a complete 200 of %d bytes", len(body))
			}
			if err == nil && status == http.StatusOK {
				t.Fatalf("first GET after the damage: a complete 200 (want a cut body)")
			}

			status, body, err = getBlob(t, p, "library/app", layer)
			if err != nil || status != http.StatusOK || sha(body) != layer {
				t.Fatalf("second GET: status %d, %d bytes, digest %s, error %v; want the right blob", status, len(body), sha(body), err)
			}
			if got := hub.Counts().TotalBlobGET() - before; got != 1 {
				t.Fatalf("upstream blob GETs after the damage = %d, want 1 (the refetch)", got)
			}
			if _, metrics := p.opsGet(t, "/metrics"); !bytes.Contains([]byte(metrics), []byte("hubcache_blob_verify_failures_total 1")) {
				t.Errorf("the damaged read is not counted in hubcache_blob_verify_failures_total")
			}
		})
	}
}
