package system

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hubcache/hubcache/test/testcerts"
)

// dockerHubHost is the name containerd uses for Docker Hub: it pulls docker.io/… from
// https://registry-1.docker.io.
const dockerHubHost = "registry-1.docker.io"

// dockerHubRoute makes the fake Docker Hub reachable under Docker Hub's own name, the way a
// node reaches the real one, so an image the webhook leaves alone (a private one) is pulled by
// the kubelet exactly as without hubcache. containerd keeps no registry or mirror setting:
// its environment names an HTTPS proxy (HTTPS_PROXY, as on a node behind an egress proxy) and
// a CA file (SSL_CERT_FILE). The proxy tunnels a CONNECT to registry-1.docker.io:443 to a
// TLS front of the fake hub whose certificate, for that name, that CA signed; it refuses every
// other destination. Rewritten images on 127.0.0.1 never meet the proxy: Go's
// HTTP client does not proxy loopback addresses (NO_PROXY says so too).
type dockerHubRoute struct {
	// Env is what the kubelet's containerd needs in its environment.
	Env []string
	// tunnels counts CONNECTs to Docker Hub: requests that left the node for "Docker Hub".
	tunnels atomic.Int64

	ln    net.Listener
	front string // host:port of the TLS front

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startDockerHubRoute(t *testing.T, hubURL string) *dockerHubRoute {
	t.Helper()
	dir := t.TempDir()
	ca := testcerts.NewCA(t)
	certFile, keyFile := ca.Issue(t, dir, dockerHubHost, 2, x509.ExtKeyUsageServerAuth)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	up, err := url.Parse(hubURL)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(up))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	front.StartTLS()
	t.Cleanup(front.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &dockerHubRoute{ln: ln, front: front.Listener.Addr().String(), conns: map[net.Conn]bool{}}
	srv := &http.Server{Handler: http.HandlerFunc(r.connect)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.conns = nil
		r.mu.Unlock()
		r.wg.Wait()
	})
	r.Env = []string{
		"HTTPS_PROXY=http://" + ln.Addr().String(),
		"NO_PROXY=127.0.0.1,localhost",
		"SSL_CERT_FILE=" + ca.Bundle(t, dir),
	}
	return r
}

// connect answers CONNECT registry-1.docker.io:443 with a tunnel to the TLS front.
func (r *dockerHubRoute) connect(w http.ResponseWriter, req *http.Request) {
	host, port, err := net.SplitHostPort(req.Host)
	if req.Method != http.MethodConnect || err != nil || port != "443" || host != dockerHubHost {
		http.Error(w, "this proxy only tunnels to Docker Hub", http.StatusForbidden)
		return
	}
	up, err := net.Dial("tcp", r.front)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	r.tunnels.Add(1)
	if !r.track(client, up) {
		return
	}
	_, _ = io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() {
		defer r.wg.Done()
		defer r.untrack(client, up)
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, rw); done <- struct{}{} }()
		go func() { _, _ = io.Copy(client, up); done <- struct{}{} }()
		// When either side ends, end both, then wait for the other copy.
		<-done
		client.Close()
		up.Close()
		<-done
	}()
}

// track remembers a tunnel's connections so the test's end closes them and waits for its
// relay; false (and both closed) when the route is already shutting down.
func (r *dockerHubRoute) track(conns ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		r.conns[c] = true
	}
	r.wg.Add(1)
	return true
}

func (r *dockerHubRoute) untrack(conns ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(r.conns, c)
	}
}
