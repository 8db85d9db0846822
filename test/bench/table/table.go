// Package table collects one row per benchmark of `make bench` and renders them as the
// Markdown table in docs/bench.md. A benchmark measures its baselines in the same run and
// records ratios, the number of runs and their spread; the renderer adds the machine, the date
// and the command, so a reader can tell what the numbers are worth.
package table

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// EnvResults names the folder benchmarks write their rows to (make bench sets it).
const EnvResults = "HUBCACHE_BENCH_RESULTS"

// Verdict says whether a row met its target.
type Verdict string

const (
	Met    Verdict = "met"
	Missed Verdict = "missed"
	// Context rows have no target of their own (absolute figures, a breakdown).
	Context Verdict = "–"
)

// Row is one line of the table.
type Row struct {
	// ID orders the rows (issue order): "01-warm-blob-1".
	ID string `json:"id"`
	// Measured says what is measured, with any scaling-down: "warm blob, 256 MiB, 1 client".
	Measured string `json:"measured"`
	// Compared names the baselines measured in the same run.
	Compared string `json:"compared"`
	// Result is the headline, in ratios: "0.97× the limit, 1.31× distribution".
	Result string `json:"result"`
	// Spread is the range of the per-run figures behind Result: "0.93–1.01; 1.20–1.40".
	Spread string `json:"spread"`
	Runs   int    `json:"runs"`
	Target string `json:"target"`
	// Verdict compares Result with Target.
	Verdict Verdict `json:"verdict"`
	// Notes carries the absolute figures, as context only.
	Notes string `json:"notes"`
}

// Record logs the row and, when make bench asked for it, writes it for the renderer.
func Record(tb testing.TB, r Row) {
	tb.Helper()
	tb.Logf("| %s | %s | %s | %s | %d | %s | %s | %s |", r.Measured, r.Compared, r.Result, r.Spread, r.Runs, r.Target, r.Verdict, r.Notes)
	dir := os.Getenv(EnvResults)
	if dir == "" {
		return
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		tb.Fatalf("encoding row %s: %v", r.ID, err)
	}
	if err := os.WriteFile(filepath.Join(dir, r.ID+".json"), b, 0o644); err != nil {
		tb.Fatalf("writing row %s: %v", r.ID, err)
	}
}

// Check returns Met when ok, else Missed.
func Check(ok bool) Verdict {
	if ok {
		return Met
	}
	return Missed
}

// Samples are one figure per run.
type Samples []float64

// Median is the middle run (the mean of the two middle runs for an even count).
func (s Samples) Median() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	c := slices.Clone(s)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

// Min and Max bound the runs.
func (s Samples) Min() float64 { return slices.Min(s) }
func (s Samples) Max() float64 { return slices.Max(s) }

// Ratios divides run i of s by run i of base: paired runs, so a slow moment of the machine
// hits both sides of one ratio.
func Ratios(s, base Samples) Samples {
	n := min(len(s), len(base))
	out := make(Samples, n)
	for i := range n {
		out[i] = s[i] / base[i]
	}
	return out
}

// Range formats the spread of s with the given precision: "0.93–1.01".
func (s Samples) Range(prec int) string {
	if len(s) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.*f–%.*f", prec, s.Min(), prec, s.Max())
}

// Header describes the run: machine, date, command and commit.
type Header struct {
	Date, Machine, Go, Commit, Command string
}

const (
	beginMarker = "<!-- bench:table:begin -->"
	endMarker   = "<!-- bench:table:end -->"
)

// Load reads every row in dir, in ID order.
func Load(dir string) ([]Row, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("listing rows in %s: %w", dir, err)
	}
	rows := make([]Row, 0, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading row: %w", err)
		}
		var r Row
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decoding row %s: %w", p, err)
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b Row) int { return strings.Compare(a.ID, b.ID) })
	return rows, nil
}

// Markdown renders the header and rows.
func Markdown(h Header, rows []Row) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Measured %s on %s (%s), commit %s, with `%s`.\n\n", h.Date, h.Machine, h.Go, h.Commit, h.Command)
	sb.WriteString("| row | compared in the same run | result (median) | spread (min–max) | runs | target | met | context (absolute) |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|\n")
	cell := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", "\\|"), "\n", " ") }
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %d | %s | %s | %s |\n",
			cell(r.Measured), cell(r.Compared), cell(r.Result), cell(r.Spread), r.Runs, cell(r.Target), r.Verdict, cell(r.Notes))
	}
	return sb.String()
}

// Splice puts table between the markers of doc, which must hold both once.
func Splice(doc, table string) (string, error) {
	i := strings.Index(doc, beginMarker)
	j := strings.Index(doc, endMarker)
	if i < 0 || j < i || strings.Count(doc, beginMarker) != 1 || strings.Count(doc, endMarker) != 1 {
		return "", fmt.Errorf("the document needs one %q and one %q after it", beginMarker, endMarker)
	}
	return doc[:i+len(beginMarker)] + "\n" + table + doc[j:], nil
}
