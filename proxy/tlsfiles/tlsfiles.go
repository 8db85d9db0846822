// Package tlsfiles builds TLS configurations from certificate files that are reloaded when
// they change (cert-manager rotates them in place), for mutual TLS between the proxy and its
// clients (node entry points, replicas).
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// recheck is how often the files' modification times are looked at, at most.
const recheck = 5 * time.Second

// Files is a certificate, its key and a CA bundle, reloaded when a file changes. A reload that
// fails keeps the previous material (a rotation may be half-written) and is retried.
type Files struct {
	certFile, keyFile, caFile string

	mu      sync.Mutex
	checked time.Time
	mtimes  [3]time.Time
	cert    *tls.Certificate
	pool    *x509.CertPool
}

// Load reads the files once; certFile and keyFile go together, caFile is optional.
func Load(certFile, keyFile, caFile string) (*Files, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a certificate file needs its key file and the other way round")
	}
	f := &Files{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

func mtime(path string) time.Time {
	if path == "" {
		return time.Time{}
	}
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

func (f *Files) load() error {
	var cert *tls.Certificate
	if f.certFile != "" {
		c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			return fmt.Errorf("loading %s and %s: %w", f.certFile, f.keyFile, err)
		}
		cert = &c
	}
	var pool *x509.CertPool
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return fmt.Errorf("reading CA bundle: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("CA bundle %s holds no PEM certificate", f.caFile)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cert, f.pool = cert, pool
	f.mtimes = [3]time.Time{mtime(f.certFile), mtime(f.keyFile), mtime(f.caFile)}
	f.checked = time.Now()
	return nil
}

// current returns the material, reloading it first when a file changed.
func (f *Files) current() (*tls.Certificate, *x509.CertPool) {
	f.mu.Lock()
	stale := time.Since(f.checked) >= recheck
	if stale {
		f.checked = time.Now()
		stale = f.mtimes != [3]time.Time{mtime(f.certFile), mtime(f.keyFile), mtime(f.caFile)}
	}
	f.mu.Unlock()
	if stale {
		_ = f.load() // on failure the previous material stays; the next check retries
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert, f.pool
}

// ServerConfig serves the certificate; with a CA bundle, clients must present a certificate
// it signed.
func (f *Files) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := f.current()
			if cert == nil {
				return nil, errors.New("no server certificate")
			}
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
			if pool != nil {
				c.ClientCAs = pool
				c.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}
}

// ClientConfig verifies the server against the CA bundle (the system roots without one) and
// presents the certificate, if any. Both follow rotations.
func (f *Files) ClientConfig() *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := f.current()
			if cert == nil {
				return &tls.Certificate{}, nil // none: the server decides
			}
			return cert, nil
		},
	}
	if f.caFile == "" {
		return c
	}
	// The CA bundle may rotate: verify against the current one ourselves.
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		_, pool := f.current()
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Roots: pool, Intermediates: inter})
		return err
	}
	return c
}
