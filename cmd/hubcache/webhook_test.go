package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubcache/hubcache/test/testenv"
)

// writeCert writes a fresh self-signed certificate for 127.0.0.1 with the given common name
// into dir, the way a Secret volume update replaces both files.
func writeCert(t *testing.T, dir, commonName string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Write both to temporary names first so the watcher never sees half a pair for long.
	for name, block := range map[string]*pem.Block{
		"tls.crt": {Type: "CERTIFICATE", Bytes: der},
		"tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name+".new"), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"tls.key", "tls.crt"} {
		if err := os.Rename(filepath.Join(dir, name+".new"), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return testenv.FreeAddr(t)
}

// servedCommonName returns the common name of the certificate the server presents.
func servedCommonName(addr string) (string, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the served certificate
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWebhookCommandServesReloadsCertificatesAndReadsTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, "first")
	listen, health, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
	t.Setenv("HUBCACHE_TARGET", "cache.internal:5000")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs([]string{"webhook", "--listen", listen, "--cert-dir", dir,
			"--health-listen", health, "--metrics-listen", metrics, "--log-level", "warn"})
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook command: %v", err)
		}
	})

	waitFor(t, "/readyz", func() bool { code, _ := httpGet(t, "http://"+health+"/readyz"); return code == http.StatusOK })
	if code, body := httpGet(t, "http://"+health+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}

	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},` +
		`"resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod",` +
		`"metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}}}}`
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test certificate
	resp, err := client.Post("https://"+listen+"/mutate-v1-pod", "application/json", strings.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Response struct {
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
		} `json:"response"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || !out.Response.Allowed || !bytes.Contains(out.Response.Patch, []byte("cache.internal:5000/docker.io/library/nginx:1.27")) {
		t.Errorf("review answered %+v (%v); want a patch to the HUBCACHE_TARGET target", out.Response, err)
	}
	if _, body := httpGet(t, "http://"+metrics+"/metrics"); !strings.Contains(body, `hubcache_webhook_rewrites_total{mode="enabled",outcome="rewritten"} 1`) ||
		!strings.Contains(body, "controller_runtime_webhook_requests_total") {
		t.Errorf("/metrics lacks the rewrite counter or controller-runtime's webhook metrics:\n%s", body)
	}

	if cn, err := servedCommonName(listen); err != nil || cn != "first" {
		t.Fatalf("served certificate %q (%v), want first", cn, err)
	}
	writeCert(t, dir, "rotated")
	waitFor(t, "the rotated certificate to be served", func() bool { cn, _ := servedCommonName(listen); return cn == "rotated" })
}

func TestWebhookCommandRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, "x")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"a listen address without a port", []string{"--listen", "127.0.0.1"}, "--listen"},
		{"port zero", []string{"--listen", "127.0.0.1:0"}, "port must be"},
		{"a cert dir without certificates", []string{"--cert-dir", t.TempDir()}, "--cert-dir"},
		{"Docker Hub as the target", []string{"--target", "docker.io"}, "Docker Hub"},
		{"a malformed exclude pattern", []string{"--exclude", "["}, "exclude pattern"},
		{"an unknown log level", []string{"--log-level", "loud"}, "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRootCmd()
			args := append([]string{"webhook", "--cert-dir", dir, "--listen", "127.0.0.1:1", "--health-listen", "", "--metrics-listen", ""}, tt.args...)
			root.SetArgs(args)
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
