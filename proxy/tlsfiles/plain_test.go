package tlsfiles

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A plain-HTTP client (a node entry point from before mutual TLS) gets a 503, which makes it
// fall back to Docker Hub, while TLS clients are served as before.
func TestAnswerPlainHTTP(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello over TLS")
	}))
	srv.Listener = AnswerPlainHTTP(srv.Listener)
	srv.StartTLS()
	defer srv.Close()

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello over TLS" {
		t.Fatalf("TLS client got %d %q", resp.StatusCode, body)
	}

	plain, err := http.Get("http://" + srv.Listener.Addr().String() + "/v2/library/nginx/manifests/1.27")
	if err != nil {
		t.Fatalf("plain client: %v", err)
	}
	body, _ = io.ReadAll(plain.Body)
	plain.Body.Close()
	if plain.StatusCode != http.StatusServiceUnavailable || plain.Header.Get("Retry-After") == "" {
		t.Fatalf("plain client got %d %q, want 503 with Retry-After", plain.StatusCode, body)
	}

	// A client that connects and sends nothing does not stop others from being served.
	idle, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), srv.Client().Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatalf("TLS handshake beside an idle connection: %v", err)
	}
	conn.Close()
}
