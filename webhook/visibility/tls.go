package visibility

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// HTTPClient returns an HTTP client for the proxy. caFile (PEM) replaces the system roots
// when set; certFile and keyFile, both or neither, are the client certificate for mutual
// TLS, read again at every handshake so a certificate renewed by cert-manager is used
// without a restart.
func HTTPClient(caFile, certFile, keyFile string) (*http.Client, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--proxy-cert-file and --proxy-key-file go together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--proxy-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--proxy-ca-file %s: no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		// Fail at start-up, not at the first Pod.
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("--proxy-cert-file/--proxy-key-file: %w", err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("loading the client certificate: %w", err)
			}
			return &c, nil
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	t.Proxy = nil // the cache is in the cluster; an HTTP(S)_PROXY must not see its traffic
	t.MaxIdleConnsPerHost = 16
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: t}, nil
}
