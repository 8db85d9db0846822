package replicas

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/tlsfiles"
	"github.com/hubcache/hubcache/test/fakehub"
	"github.com/hubcache/hubcache/test/testcerts"
)

// mtlsFiles are the certificates of an installation with mutual TLS, as cert-manager issues
// them from one CA (manifests/base/proxy/certificate.yaml): the proxy's (server and client
// auth, named hubcache-proxy, which the replicas verify in each other's) and the node's
// (client auth).
type mtlsFiles struct {
	ca                  string
	proxyCert, proxyKey string
	nodeCert, nodeKey   string
}

func issueMTLS(t *testing.T) mtlsFiles {
	t.Helper()
	dir := t.TempDir()
	authority := testcerts.NewCA(t)
	f := mtlsFiles{ca: authority.Bundle(t, dir)}
	f.proxyCert, f.proxyKey = authority.Issue(t, dir, "hubcache-proxy", 2, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	f.nodeCert, f.nodeKey = authority.Issue(t, dir, "hubcache-node", 3, x509.ExtKeyUsageClientAuth)
	return f
}

// client is an HTTPS client that trusts the CA and presents cert/key (none when empty).
func (f mtlsFiles) client(t *testing.T, cert, key string) *http.Client {
	t.Helper()
	files, err := tlsfiles.Load(cert, key, f.ca)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: files.ClientConfig()}, Timeout: 2 * time.Minute}
}

func TestWithMutualTLSOnlyCertificateHoldersUseTheProxyAndReplicasShareFillsOverTLS(t *testing.T) {
	certs := issueMTLS(t)
	c := newCluster(t, 2,
		"--tls-cert-file="+certs.proxyCert,
		"--tls-key-file="+certs.proxyKey,
		"--client-ca-file="+certs.ca)
	img := fakehub.RandomImage(t, 2, 8<<20, false)
	c.hub.Push(t, "library/tls", "v1", img)
	blobs := imageBlobs(t, img)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	t.Run("a client without a certificate is refused at the TLS handshake", func(t *testing.T) {
		c.hub.Reset()
		for _, r := range c.replicas {
			err := getBlobWith(ctx, certs.client(t, "", ""), r.URL(), "library/tls", blobs[0], nil)
			if err == nil || !strings.Contains(err.Error(), "tls: certificate required") {
				t.Errorf("%s served a client without a certificate: %v", r.Name, err)
			}
			// Plain HTTP on the registry port gets a 503 (a node from before mutual TLS falls
			// back to Docker Hub on it) and nothing else.
			plain := "http://" + r.Addr + "/v2/docker.io/library/tls/blobs/" + blobs[0].String()
			resp, err := http.Get(plain)
			if err != nil {
				t.Errorf("%s: plain HTTP client got no answer: %v", r.Name, err)
			} else {
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable {
					t.Errorf("%s answered a plain HTTP client %d, want 503", r.Name, resp.StatusCode)
				}
			}
			// The fill endpoint too: the fill secret alone is not enough.
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL()+"/internal/fills/"+blobs[0].String()+"?offset=0", nil)
			req.Header.Set("Authorization", "Bearer "+fillSecret)
			if resp, err := certs.client(t, "", "").Do(req); err == nil {
				_ = resp.Body.Close()
				t.Errorf("%s answered %d on its fill endpoint to a client without a certificate", r.Name, resp.StatusCode)
			}
		}
		if n := c.hub.Counts().TotalBlobGET() + c.hub.Counts().TotalBlobHEAD(); n != 0 {
			t.Errorf("refused clients made upstream requests (%d)", n)
		}
	})

	t.Run("two replicas share one fill over TLS", func(t *testing.T) {
		c.hub.Reset()
		layer := blobs[1]
		// A few seconds of fill, so that the second replica asks while the first holds it.
		c.hub.SetDigestMode(layer, fakehub.Slow(0, 10*time.Millisecond))
		defer c.hub.SetDigestMode(layer, fakehub.Normal())
		node := certs.client(t, certs.nodeCert, certs.nodeKey)
		errs := make([]error, len(c.replicas))
		var wg sync.WaitGroup
		wg.Go(func() { errs[0] = getBlobWith(ctx, node, c.replicas[0].URL(), "library/tls", layer, nil) })
		if holder := waitForHolder(t, c, layer); holder != c.replicas[0] {
			t.Fatalf("%s holds the fill, want %s", holder.Name, c.replicas[0].Name)
		}
		wg.Go(func() { errs[1] = getBlobWith(ctx, node, c.replicas[1].URL(), "library/tls", layer, nil) })
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("GET through %s: %v", c.replicas[i].Name, err)
			}
		}
		if n := c.hub.Counts().BlobGET[layer.String()]; n != 1 {
			t.Errorf("upstream saw %d GETs of the layer, want 1 (the second replica did not read the first's fill)", n)
		}
		if !strings.Contains(c.replicas[1].log(), "following the fill of another replica") {
			t.Errorf("%s did not follow the fill of %s", c.replicas[1].Name, c.replicas[0].Name)
		}
	})

	t.Run("the node pulls through with its client certificate", func(t *testing.T) {
		c.hub.Reset()
		node := start(t, "node", nil, "node",
			"--proxy="+c.replicas[0].URL(),
			"--proxy-ca-file="+certs.ca,
			"--proxy-cert-file="+certs.nodeCert,
			"--proxy-key-file="+certs.nodeKey,
			"--upstream=docker.io="+c.hub.URL())
		if err := pull(ctx, node.URL(), "library/tls", "v1"); err != nil {
			t.Fatalf("pull through the node: %v\n%s", err, node.log())
		}
		// Through the proxy, not the node's fallback: the proxy cached every blob.
		for _, d := range blobs {
			if _, err := storedSoon(ctx, c, d); err != nil {
				t.Errorf("blob %s is not in the bucket: the node did not pull through the proxy (%v)", d, err)
			}
		}
		if n := c.hub.Counts().TotalManifestGET(); n != 1 {
			t.Errorf("upstream saw %d manifest GETs, want 1 (the proxy's)", n)
		}
	})
}
