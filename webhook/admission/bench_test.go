package admission

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// BenchmarkLargePod answers a 1,000- and a 40,000-container Pod through the whole HTTP
// handler (AdmissionReview decoding, plan, patch, encoding) and reports the time per
// container of each and their ratio, which should stay near 1 (linear cost). The annotation
// limit is lifted so the 40,000-container Pod takes the patching path: with the default
// limit its original-images annotation would not fit and it is admitted unchanged. The
// deadlines are lifted too, so a slow machine measures rather than fails open.
func BenchmarkLargePod(b *testing.B) {
	limits := DefaultLimits()
	limits.MaxAnnotationBytes = 64 << 20
	limits.MaxRequestBytes = 64 << 20
	// The benchmark measures the cost; on a loaded machine the 2 s deadline would turn the
	// large Pod into a fail-open answer instead.
	limits.RequestTimeout, limits.ReadTimeout = time.Minute, time.Minute
	hooks, err := Webhooks(rewrite.Policy{}, WithLimits(limits))
	if err != nil {
		b.Fatal(err)
	}
	h := hooks[PathMutate]
	small := review(b, newPod(nil, manyContainers(1000), nil))
	large := review(b, newPod(nil, manyContainers(40000), nil))
	run := func(body []byte) time.Duration {
		req := httptest.NewRequest(http.MethodPost, PathMutate, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		took := time.Since(start)
		if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) {
			b.Fatalf("HTTP %d without a patch: %.200s", rec.Code, rec.Body.String())
		}
		return took
	}
	var smallTotal, largeTotal, largeMax time.Duration
	b.ResetTimer()
	for range b.N {
		smallTotal += run(small)
		took := run(large)
		largeTotal += took
		largeMax = max(largeMax, took)
	}
	perSmall := float64(smallTotal.Nanoseconds()) / float64(b.N) / 1000
	perLarge := float64(largeTotal.Nanoseconds()) / float64(b.N) / 40000
	b.ReportMetric(perSmall, "ns/container@1k")
	b.ReportMetric(perLarge, "ns/container@40k")
	b.ReportMetric(perLarge/perSmall, "ratio")
	b.ReportMetric(float64(largeMax.Milliseconds()), "max-ms@40k")
	b.Logf("request bodies %d and %d bytes; per container %.0f ns (1k) vs %.0f ns (40k): ratio %.2f; 40k Pod at most %s (timeout 3s)",
		len(small), len(large), perSmall, perLarge, perLarge/perSmall, largeMax)
}
