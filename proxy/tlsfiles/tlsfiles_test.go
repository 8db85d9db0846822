package tlsfiles_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hubcache/hubcache/proxy/tlsfiles"
	"github.com/hubcache/hubcache/test/testcerts"
)

func TestOnlyClientsWithACertificateFromTheCAAreServed(t *testing.T) {
	dir := t.TempDir()
	authority := testcerts.NewCA(t)
	caPath := authority.Bundle(t, dir)
	srvCert, srvKey := authority.Issue(t, dir, "proxy", 2, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := authority.Issue(t, dir, "node", 3, x509.ExtKeyUsageClientAuth)

	server, err := tlsfiles.Load(srvCert, srvKey, caPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "https://" + ln.Addr().String() + "/"

	get := func(files *tlsfiles.Files) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: files.ClientConfig()}, Timeout: 10 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	anonymous, err := tlsfiles.Load("", "", caPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(anonymous); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	node, err := tlsfiles.Load(cliCert, cliKey, caPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(node); err != nil {
		t.Fatalf("the client with a certificate was refused: %v", err)
	}

	// A certificate from another CA is refused.
	otherDir := t.TempDir()
	strangerCert, strangerKey := testcerts.NewCA(t).Issue(t, otherDir, "stranger", 4, x509.ExtKeyUsageClientAuth)
	stranger, err := tlsfiles.Load(strangerCert, strangerKey, caPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(stranger); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
}

func TestMismatchedFilesAreRefused(t *testing.T) {
	if _, err := tlsfiles.Load("cert.pem", "", ""); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
	if _, err := tlsfiles.Load("", "", filepath.Join(t.TempDir(), "missing.crt")); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}

// Replicas share one certificate (server and client auth) and dial each other by IP: each
// verifies the other for the fixed name, presents the same certificate, and is served.
func TestReplicasVerifyEachOtherForTheFixedNameAndPresentTheirCertificate(t *testing.T) {
	dir := t.TempDir()
	authority := testcerts.NewCA(t)
	caPath := authority.Bundle(t, dir)
	cert, key := authority.Issue(t, dir, "hubcache-proxy", 2, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	replica, err := tlsfiles.Load(cert, key, caPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", replica.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	get := func(cfg *tls.Config) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		resp, err := c.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	peer, err := replica.PeerConfig("hubcache-proxy")
	if err != nil {
		t.Fatal(err)
	}
	if who, err := get(peer); err != nil || who != "hubcache-proxy" {
		t.Fatalf("replica to replica: %q, %v", who, err)
	}
	if _, err := replica.PeerConfig("hubcache-proxy.elsewhere.svc"); err == nil {
		t.Error("a server name the certificate does not carry was accepted at start-up")
	}

	// A server whose certificate is from another CA (same name) is not trusted.
	otherDir := t.TempDir()
	otherCert, otherKey := testcerts.NewCA(t).Issue(t, otherDir, "hubcache-proxy", 3, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	stranger, err := tlsfiles.Load(otherCert, otherKey, caPath)
	if err != nil {
		t.Fatal(err)
	}
	strangerLn, err := tls.Listen("tcp", "127.0.0.1:0", stranger.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	strangerSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go func() { _ = strangerSrv.Serve(strangerLn) }()
	t.Cleanup(func() { _ = strangerSrv.Close() })
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: peer}, Timeout: 10 * time.Second}
	if resp, err := c.Get("https://" + strangerLn.Addr().String() + "/"); err == nil {
		_ = resp.Body.Close()
		t.Error("a replica trusted a server certificate from another CA")
	}
}
