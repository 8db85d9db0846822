package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/hubcache/hubcache/webhook/rewrite"
	"github.com/hubcache/hubcache/webhook/visibility"
)

// visibilityStub answers every repository as public, as the proxy's endpoint does.
func visibilityStub(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		type item struct {
			Repository string `json:"repository"`
			Visibility string `json:"visibility"`
			Served     bool   `json:"served"`
		}
		var out struct {
			Repositories []item `json:"repositories"`
		}
		for _, repo := range r.URL.Query()["repository"] {
			out.Repositories = append(out.Repositories, item{repo, "public", true})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func percentiles(ds []time.Duration) (time.Duration, time.Duration) {
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*99/100]
}

// BenchmarkVisibilityLatency measures what asking the cache adds to the answer for a Pod
// with imagePullSecrets and three Docker Hub images, over real HTTP on loopback: a warm
// visibility cache (answers remembered) and a cold one (every Pod asks the stub), against the same
// Pod without pull secrets. It prints p50 and p99 of each.
func BenchmarkVisibilityLatency(b *testing.B) {
	srv := visibilityStub(b)
	const samples = 300
	images := []string{"nginx:1.27", "redis:7", "team/api:2"}
	measure := func(h *Handler, secret bool) []time.Duration {
		out := make([]time.Duration, 0, samples)
		for range samples {
			req := createRequest(b, podWithSecret(secret, images...))
			start := time.Now()
			resp := h.Handle(context.Background(), req)
			out = append(out, time.Since(start))
			if len(resp.Patches) != len(images)+1 {
				b.Fatalf("patches %v warnings %q", resp.Patches, resp.Warnings)
			}
		}
		return out
	}
	newHandler := func(opts ...visibility.Option) *Handler {
		c, err := visibility.New(srv.URL, opts...)
		if err != nil {
			b.Fatal(err)
		}
		h, err := NewHandler(ModeEnabled, rewrite.Policy{}, WithVisibility(c))
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	b.ResetTimer()
	for range b.N {
		base := measure(newHandler(), false)
		warmHandler := newHandler()
		measure(warmHandler, true) // fill the cache
		warm := measure(warmHandler, true)
		// Answers expire at once: every Pod asks (over a kept-alive connection).
		cold := measure(newHandler(visibility.WithTTL(time.Nanosecond), visibility.WithUnknownTTL(time.Nanosecond)), true)
		b50, b99 := percentiles(base)
		w50, w99 := percentiles(warm)
		c50, c99 := percentiles(cold)
		b.ReportMetric(float64(w50-b50)/1e3, "µs-added-p50-warm")
		b.ReportMetric(float64(c50-b50)/1e3, "µs-added-p50-cold")
		b.Logf("%s", fmt.Sprintf("no pull secrets p50 %s p99 %s | pull secrets, warm cache p50 %s p99 %s | cold cache p50 %s p99 %s",
			b50, b99, w50, w99, c50, c99))
	}
}
