package admission

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// BenchmarkHandlerRealisticPod is rows 11 and 12 without TLS and the network: the whole HTTP
// handler (bounded body, AdmissionReview decoding, the decision, the response) for the
// realistic Pod, hubcache beside the no-op, in process. It is not a table row; it is for
// profiling (-cpuprofile, -memprofile) and allocation counts (-benchmem) per request, which
// the TLS benchmarks blur with the client's and the handshakes' work.
func BenchmarkHandlerRealisticPod(b *testing.B) {
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	hooks, err := Webhooks(rewrite.Policy{}, WithLogger(log), WithMetrics(metrics))
	if err != nil {
		b.Fatal(err)
	}
	noop := &admission.Webhook{
		Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			return admission.Allowed("")
		}),
		LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return logr.Discard() },
	}
	body := realisticReview(b)
	for _, side := range []struct {
		name string
		h    http.Handler
		want string
	}{
		{"hubcache", hooks[PathMutate], `"patch"`},
		{"noop", noop, `"allowed":true`},
	} {
		b.Run(side.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, PathMutate, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				side.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(side.want)) {
					b.Fatalf("HTTP %d: %.300s", rec.Code, rec.Body.String())
				}
			}
		})
	}
}
