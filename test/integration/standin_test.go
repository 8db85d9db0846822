package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// newProxyHandler is a stand-in until proxy/server lands: a plain reverse proxy to the hub
// that rewrites /v2/docker.io/<repo> to /v2/<repo>. It caches nothing.
func newProxyHandler(t *testing.T, hubURL string, _ proxyConfig) http.Handler {
	t.Helper()
	u, err := url.Parse(hubURL)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(hubURL + "/token")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatal(err)
	}
	return &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.URL.Path = strings.Replace(r.In.URL.Path, "/v2/docker.io/", "/v2/", 1)
		r.Out.URL.RawPath = ""
		r.Out.Header.Set("Authorization", "Bearer "+tok.Token)
	}}
}
