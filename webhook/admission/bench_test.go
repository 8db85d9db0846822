package admission

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hubcache/hubcache/test/bench/table"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

// distinctContainers returns n containers with n different Docker Hub images, numbered from
// first: the worst case, since the plan parses each distinct reference once and the handler
// remembers the decisions about references it has seen.
func distinctContainers(first, n int) []corev1.Container {
	cs := make([]corev1.Container, n)
	for i := range cs {
		j := first + i
		cs[i] = corev1.Container{Name: fmt.Sprintf("c%05d", i), Image: fmt.Sprintf("team/app%07d:1.%d", j, j%13)}
	}
	return cs
}

// Row 13's sizes: largeRuns pairs, each one 40,000-container Pod against forty
// 1,000-container Pods (the same number of containers), in alternating order.
const (
	smallPod  = 1000
	largePod  = 40000
	largeRuns = 7
)

// BenchmarkLargePod (row 13) answers a 1,000- and a 40,000-container Pod through the whole
// HTTP handler (body read, AdmissionReview decoding, plan, patch, encoding) and compares the
// time per container: the cost must stay linear. Each run times one 40k Pod and forty 1k Pods
// back to back, so both sides handle the same number of containers and a slow moment of the
// machine hits both; the row is the median of the per-run ratios.
//
// The annotation limit is lifted so the 40,000-container Pod takes the patching path: with the
// default limit its original-images annotation would not fit and it is admitted unchanged.
// The deadlines are lifted too, so a slow machine measures rather than fails open; the 40k
// Pod's slowest answer is reported against the 3 s webhook timeout.
func BenchmarkLargePod(b *testing.B) {
	limits := DefaultLimits()
	limits.MaxAnnotationBytes = 64 << 20
	limits.MaxRequestBytes = 64 << 20
	limits.RequestTimeout, limits.ReadTimeout = time.Minute, time.Minute
	hooks, err := Webhooks(rewrite.Policy{}, WithLimits(limits))
	if err != nil {
		b.Fatal(err)
	}
	h := hooks[PathMutate]
	// Every image of every Pod is one the handler has not seen in this run (it remembers the
	// last 1024), so neither side is helped by what the other left: a fresh set of 1k Pods
	// and a fresh 40k Pod for each timed run, the warm-up included.
	next := 0
	pods := func(containers, n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = review(b, newPod(nil, distinctContainers(next, containers), nil))
			next += containers
		}
		return out
	}
	smalls := make([][][]byte, largeRuns+1)
	larges := make([][][]byte, largeRuns+1)
	for i := range smalls {
		smalls[i], larges[i] = pods(smallPod, largePod/smallPod), pods(largePod, 1)
	}
	largeSize := len(larges[0][0])
	// cpu is the process's CPU time so far (GC workers included): unlike wall time it does not
	// count the moments another process had the cores, so it is reported beside it.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var cpuSmall, cpuLarge time.Duration
	run := func(bodies [][]byte) time.Duration {
		start, startCPU := time.Now(), cpu()
		defer func() {
			if len(bodies) == 1 {
				cpuLarge += cpu() - startCPU
			} else {
				cpuSmall += cpu() - startCPU
			}
		}()
		for _, body := range bodies {
			req := httptest.NewRequest(http.MethodPost, PathMutate, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"patch"`)) {
				b.Fatalf("HTTP %d without a patch: %.200s", rec.Code, rec.Body.String())
			}
		}
		return time.Since(start)
	}
	perContainer := func(d time.Duration, containers int) float64 { return float64(d.Nanoseconds()) / float64(containers) }
	for range b.N {
		// Warm-up: code paths, the allocator and the GC pacer at both sizes.
		run(larges[largeRuns])
		run(smalls[largeRuns])
		cpuSmall, cpuLarge = 0, 0
		var perSmall, perLarge table.Samples
		var largeMax time.Duration
		for i := range largeRuns {
			var ds, dl time.Duration
			if i%2 == 0 {
				ds = run(smalls[i])
				dl = run(larges[i])
			} else {
				dl = run(larges[i])
				ds = run(smalls[i])
			}
			largeMax = max(largeMax, dl)
			perSmall = append(perSmall, perContainer(ds, largePod))
			perLarge = append(perLarge, perContainer(dl, largePod))
		}
		ratios := table.Ratios(perLarge, perSmall)
		b.ReportMetric(perSmall.Median(), "ns/container@1k")
		b.ReportMetric(perLarge.Median(), "ns/container@40k")
		b.ReportMetric(ratios.Median(), "ratio")
		b.ReportMetric(float64(largeMax.Milliseconds()), "max-ms@40k")
		b.ReportMetric(cpuLarge.Seconds()/cpuSmall.Seconds(), "cpu-ratio")
		table.Record(b, table.Row{
			ID: "13-webhook-large-pod",
			Measured: fmt.Sprintf("webhook, time per container: a 40,000-container Pod (%.1f MB review) vs forty 1,000-container Pods, whole HTTP handler, every image distinct and rewritten",
				float64(largeSize)/1e6),
			Compared: "the 1,000-container Pod",
			Result:   fmt.Sprintf("%.2f× the 1k Pod's time per container", ratios.Median()),
			Spread:   ratios.Range(2),
			Runs:     len(ratios),
			Target:   "≤ 2× apart; the 40k Pod answered within the 3 s webhook timeout",
			Verdict:  table.Check(ratios.Median() <= 2 && largeMax < 3*time.Second),
			Notes: fmt.Sprintf("%.0f ns/container at 1k (%.0f–%.0f), %.0f at 40k (%.0f–%.0f); 40k Pod answered in %s at most; process CPU time (GC included) %.2f× the 1k Pods'",
				perSmall.Median(), perSmall.Min(), perSmall.Max(), perLarge.Median(), perLarge.Min(), perLarge.Max(),
				largeMax.Round(time.Millisecond), cpuLarge.Seconds()/cpuSmall.Seconds()),
		})
	}
}
