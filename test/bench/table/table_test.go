package table

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSamples(t *testing.T) {
	s := Samples{3, 1, 2, 10}
	if got := s.Median(); got != 2.5 {
		t.Errorf("median = %v, want 2.5", got)
	}
	if got := s.Range(1); got != "1.0–10.0" {
		t.Errorf("range = %q", got)
	}
	r := Ratios(Samples{2, 4, 9}, Samples{1, 2})
	if len(r) != 2 || r[0] != 2 || r[1] != 2 {
		t.Errorf("ratios = %v, want [2 2] (pairs only)", r)
	}
}

func TestRecordLoadSplice(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvResults, dir)
	Record(t, Row{ID: "02-b", Measured: "b", Result: "1.0×", Runs: 3, Verdict: Met})
	Record(t, Row{ID: "01-a", Measured: "a | pipe", Result: "0.5×", Runs: 5, Verdict: Missed})
	rows, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].ID != "01-a" {
		t.Fatalf("rows = %+v, want 01-a first", rows)
	}
	md := Markdown(Header{Date: "d", Machine: "m", Go: "g", Commit: "c", Command: "make bench"}, rows)
	if !strings.Contains(md, `a \| pipe`) || strings.Index(md, "| a") > strings.Index(md, "| b |") {
		t.Errorf("markdown:\n%s", md)
	}
	doc := "# x\n" + beginMarker + "\nold\n" + endMarker + "\ntail\n"
	out, err := Splice(doc, md)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "old") || !strings.HasSuffix(out, endMarker+"\ntail\n") {
		t.Errorf("spliced:\n%s", out)
	}
	if _, err := Splice("no markers", md); err == nil {
		t.Error("Splice without markers succeeded")
	}
	_ = os.Remove(filepath.Join(dir, "01-a.json"))
}
