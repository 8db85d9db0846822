package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
)

// savingsReport is what `hubcache report` prints, summed over every --from. The JSON field names are
// a contract for scripts.
type savingsReport struct {
	Sources []string `json:"sources"`
	// ManifestRequests counts client manifest GETs answered 200: what Docker Hub would have
	// counted as pulls without the cache.
	ManifestRequests int64 `json:"manifest_requests"`
	// UpstreamManifestGets counts the manifest GETs upstream answered with a manifest for the
	// proxies: the pulls Docker Hub did count. GETs that failed (unreachable, 404, 429, 401)
	// and answers from the negative cache served no pull and are left out.
	UpstreamManifestGets int64 `json:"upstream_manifest_gets"`
	// PullsAvoided is ManifestRequests − UpstreamManifestGets.
	PullsAvoided int64 `json:"pulls_avoided"`
	// HitRatio is the share of manifest and blob requests answered from the cache (0 with no
	// requests).
	HitRatio    float64 `json:"hit_ratio"`
	StaleServes int64   `json:"stale_serves"`
	// RatelimitRemaining is the lowest ratelimit-remaining any replica last saw from an
	// upstream registry; null when no upstream announced one yet.
	RatelimitRemaining *int64     `json:"ratelimit_remaining"`
	TopImages          []imageRow `json:"top_images"`
}

type imageRow struct {
	Repository string `json:"repository"`
	Pulls      int64  `json:"pulls"`
}

type reportFlags struct {
	from    []string
	output  string
	top     int
	timeout time.Duration
}

func newReportCmd() *cobra.Command {
	var f reportFlags
	cmd := &cobra.Command{
		Use:   "report --from METRICS_URL… [-o table|json]",
		Short: "Summarise what the cache saved (Docker Hub pulls avoided, hit ratio, …) from proxy metrics",
		Long: `report reads the Prometheus metrics of one or more proxy replicas (their /metrics URLs,
e.g. http://10.0.0.12:9090/metrics) and sums them: client manifest GETs, upstream manifest
GETs, Docker Hub pulls avoided (the difference), hit ratio, stale serves, the lowest rate
limit remaining and the most pulled images. Counters start at zero when a replica restarts,
so the numbers cover each replica's current lifetime. Every URL must answer: a partial sum
would understate what the cache saved.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(f.from) == 0 {
				return errors.New("--from: at least one metrics URL is needed")
			}
			if f.output != "table" && f.output != "json" {
				return fmt.Errorf("-o %q: want table or json", f.output)
			}
			if f.top < 0 {
				return fmt.Errorf("--top %d: want 0 or more", f.top)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			r, err := buildReport(ctx, http.DefaultClient, f.from, f.top)
			if err != nil {
				return err
			}
			if f.output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return writeReportTable(cmd.OutOrStdout(), r)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.from, "from", nil, "metrics URL of a proxy replica (repeat, or separate with commas)")
	fl.StringVarP(&f.output, "output", "o", "table", "table (for a terminal) or json (for scripts)")
	fl.IntVar(&f.top, "top", 10, "how many of the most pulled images to list")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "time allowed for reading every URL")
	return cmd
}

// upstreamServed are the results of hubcache_upstream_requests_total for which upstream
// answered 200 with the manifest: Docker Hub counted a pull, even when the cache then refused
// the body as damaged or too large.
var upstreamServed = []string{"ok", "digest_mismatch", "too_large"}

// buildReport scrapes every URL and sums what they say.
func buildReport(ctx context.Context, client *http.Client, urls []string, top int) (savingsReport, error) {
	r := savingsReport{Sources: urls, TopImages: []imageRow{}}
	var hits, misses float64
	images := map[string]int64{}
	for _, u := range urls {
		fams, err := scrape(ctx, client, u)
		if err != nil {
			return savingsReport{}, err
		}
		r.ManifestRequests += int64(sumMetric(fams, "hubcache_manifest_requests_total", map[string]string{"result": "ok"}))
		for _, result := range upstreamServed {
			r.UpstreamManifestGets += int64(sumMetric(fams, "hubcache_upstream_requests_total",
				map[string]string{"method": "GET", "kind": "manifest", "result": result}))
		}
		r.StaleServes += int64(sumMetric(fams, "hubcache_cache_stale_serves_total", nil))
		hits += sumMetric(fams, "hubcache_cache_hits_total", nil)
		misses += sumMetric(fams, "hubcache_cache_misses_total", nil)
		if fam, ok := fams["hubcache_upstream_ratelimit_remaining"]; ok {
			for _, m := range fam.GetMetric() {
				v := int64(value(m))
				if r.RatelimitRemaining == nil || v < *r.RatelimitRemaining {
					r.RatelimitRemaining = &v
				}
			}
		}
		if fam, ok := fams["hubcache_image_pulls_total"]; ok {
			for _, m := range fam.GetMetric() {
				images[label(m, "repository")] += int64(value(m))
			}
		}
	}
	r.PullsAvoided = r.ManifestRequests - r.UpstreamManifestGets
	if hits+misses > 0 {
		r.HitRatio = hits / (hits + misses)
	}
	for repo, n := range images {
		r.TopImages = append(r.TopImages, imageRow{Repository: repo, Pulls: n})
	}
	slices.SortFunc(r.TopImages, func(a, b imageRow) int {
		if a.Pulls != b.Pulls {
			return int(b.Pulls - a.Pulls)
		}
		return strings.Compare(a.Repository, b.Repository)
	})
	if len(r.TopImages) > top {
		r.TopImages = r.TopImages[:top]
	}
	return r, nil
}

// scrape reads one metrics URL in the Prometheus text format.
func scrape(ctx context.Context, client *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("--from %q: %w", url, err)
	}
	// Ask for the plain text format, which expfmt's text parser reads.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading %s: status %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics of %s: %w", url, err)
	}
	return fams, nil
}

// sumMetric adds every sample of name whose labels include want.
func sumMetric(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	fam, ok := fams[name]
	if !ok {
		return 0
	}
	var sum float64
	for _, m := range fam.GetMetric() {
		match := true
		for k, v := range want {
			if label(m, k) != v {
				match = false
			}
		}
		if match {
			sum += value(m)
		}
	}
	return sum
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func writeReportTable(w io.Writer, r savingsReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	remaining := "unknown"
	if r.RatelimitRemaining != nil {
		remaining = fmt.Sprint(*r.RatelimitRemaining)
	}
	fmt.Fprintf(tw, "Replicas read\t%d\n", len(r.Sources))
	fmt.Fprintf(tw, "Docker Hub pulls avoided\t%d\n", r.PullsAvoided)
	fmt.Fprintf(tw, "  client manifest GETs\t%d\n", r.ManifestRequests)
	fmt.Fprintf(tw, "  upstream manifest GETs\t%d\n", r.UpstreamManifestGets)
	fmt.Fprintf(tw, "Hit ratio\t%.1f%%\n", 100*r.HitRatio)
	fmt.Fprintf(tw, "Stale serves\t%d\n", r.StaleServes)
	fmt.Fprintf(tw, "Rate limit remaining\t%s\n", remaining)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.TopImages) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOP IMAGES\tPULLS")
	for _, row := range r.TopImages {
		fmt.Fprintf(tw, "%s\t%d\n", row.Repository, row.Pulls)
	}
	return tw.Flush()
}
