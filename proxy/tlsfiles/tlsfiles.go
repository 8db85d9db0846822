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
	return f.clientConfig("")
}

// PeerConfig is the client side of one replica talking to another: it presents the
// certificate (the replica's own serving certificate, issued for both server and client
// auth) and verifies the peer's certificate against the CA bundle for serverName, not for
// the address dialed: replicas reach each other by pod IP, which no certificate names, and
// share one certificate whose DNS names include serverName. Both follow rotations.
func (f *Files) PeerConfig(serverName string) (*tls.Config, error) {
	cert, _ := f.current()
	if cert == nil {
		return nil, errors.New("a replica needs its certificate to talk to the others")
	}
	if serverName == "" {
		return nil, errors.New("no server name to verify the other replicas' certificate against")
	}
	if err := verifyName(cert, serverName); err != nil {
		return nil, err
	}
	return f.clientConfig(serverName), nil
}

// verifyName checks that cert, which the other replicas present too, carries serverName:
// otherwise every replica-to-replica handshake would fail, and better at start-up.
func verifyName(cert *tls.Certificate, serverName string) error {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("parsing the certificate: %w", err)
		}
	}
	if err := leaf.VerifyHostname(serverName); err != nil {
		return fmt.Errorf("the certificate does not name %q, which the replicas verify in each other's certificate: %w", serverName, err)
	}
	return nil
}

// clientConfig verifies the server for serverName, or for the name dialed when it is empty.
func (f *Files) clientConfig(serverName string) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
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
		name := serverName
		if name == "" {
			name = cs.ServerName
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: pool, Intermediates: inter})
		return err
	}
	return c
}
