package visibility_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hubcache/hubcache/proxy/cache"
	"github.com/hubcache/hubcache/proxy/visibility"
)

func TestTheEndpointAnswersInTheOrderAskedWithOneCheckPerRepository(t *testing.T) {
	p := newProber()
	p.set(billing, denied)
	p.set(cache.Repo{Registry: "docker.io", Path: "acme/allowed"}, denied)
	c := newChecker(t, newStore(t), p, visibility.WithAllow("docker.io/acme/allowed"))
	h := visibility.Handler(c, slog.New(slog.DiscardHandler))

	q := "repository=docker.io/acme/billing&repository=docker.io/nginx&repository=docker.io/library/nginx&repository=docker.io/acme/allowed&repository=docker.io/acme/billing"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, visibility.Path+"?"+q, nil))
	want := `{"repositories":[` +
		`{"repository":"docker.io/acme/billing","visibility":"private","served":false},` +
		`{"repository":"docker.io/nginx","visibility":"public","served":true},` +
		`{"repository":"docker.io/library/nginx","visibility":"public","served":true},` +
		`{"repository":"docker.io/acme/allowed","visibility":"private","served":true},` +
		`{"repository":"docker.io/acme/billing","visibility":"private","served":false}]}`
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != want || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s %s\nwant 200 %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body, want)
	}
	if p.count(billing) != 1 || p.count(nginx) != 1 {
		t.Errorf("checks: billing %d, nginx %d; want one each", p.count(billing), p.count(nginx))
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, visibility.Path+"?"+q, nil))
	if rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Body.String(), `"UNSUPPORTED"`) {
		t.Errorf("POST: %d %s, want 405 UNSUPPORTED", rec.Code, rec.Body)
	}
}
