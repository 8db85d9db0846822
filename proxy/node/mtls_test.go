package node_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/node"
	"github.com/hubcache/hubcache/proxy/tlsfiles"
	"github.com/hubcache/hubcache/test/testcerts"
)

func TestOnlyANodeWithAClientCertificateIsServedByAMutualTLSProxy(t *testing.T) {
	f := newFixture(t)
	f.proxy.stop()
	dir := t.TempDir()
	authority := testcerts.NewCA(t)
	caPath := authority.Bundle(t, dir)
	srvCert, srvKey := authority.Issue(t, dir, "proxy", 2, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := authority.Issue(t, dir, "node", 3, x509.ExtKeyUsageClientAuth)

	serverFiles, err := tlsfiles.Load(srvCert, srvKey, caPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverFiles.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	var served atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		f.proxy.registry.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	proxyURL := &url.URL{Scheme: "https", Host: ln.Addr().String()}
	path := "/v2/docker.io/library/nginx/manifests/" + f.digest.String()

	anonymous, err := tlsfiles.Load("", "", caPath)
	if err != nil {
		t.Fatal(err)
	}
	stranger := startNode(t, proxyURL, f.upstreams(t), node.WithProxyTLS(anonymous.ClientConfig()), node.WithBreaker(100, time.Hour))
	if got := do(t, "GET", stranger.url+path, manifestAccept); got.status != http.StatusOK {
		t.Fatalf("node without a certificate: %d (it should fall back)", got.status)
	}
	if n := served.Load(); n != 0 {
		t.Fatalf("the proxy served %d requests of a node without a client certificate", n)
	}
	if f.hub.Counts().TotalManifestGET() != 1 {
		t.Fatalf("the refused node did not fall back upstream: %+v", f.hub.Counts())
	}

	nodeFiles, err := tlsfiles.Load(cliCert, cliKey, caPath)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, proxyURL, f.upstreams(t), node.WithProxyTLS(nodeFiles.ClientConfig()))
	if got := do(t, "GET", n.url+path, manifestAccept); got.status != http.StatusOK {
		t.Fatalf("node with a certificate: %d", got.status)
	}
	if served.Load() != 1 || f.hub.Counts().TotalManifestGET() != 1 {
		t.Fatalf("the node with a certificate was not served by the proxy (proxy %d, upstream %+v)", served.Load(), f.hub.Counts())
	}
}
