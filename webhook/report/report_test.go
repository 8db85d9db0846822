package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/hubcache/hubcache/webhook/manifest"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./webhook/report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test ./webhook/report -update after checking):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func fixtureEntries(t *testing.T) []Entry {
	t.Helper()
	ws, _, err := manifest.Read("testdata/input.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	return Entries(ws, rewrite.Policy{Exclude: []string{"docker.io/library/busybox*"}})
}

func TestGoldenOutputs(t *testing.T) {
	es := fixtureEntries(t)
	modes := map[string]string{"shop": "dry-run", "ops": "enabled"}
	tests := []struct {
		golden  string
		format  Format
		entries []Entry
		opts    Options
	}{
		{"diff.golden", FormatDiff, es, Options{}},
		{"diff-color.golden", FormatDiff, es, Options{Color: true}},
		{"json.golden", FormatJSON, es, Options{}},
		{"markdown.golden", FormatMarkdown, es, Options{}},
		{"markdown-modes.golden", FormatMarkdown, withModes(es, modes), Options{Modes: modes}},
		{"json-modes.golden", FormatJSON, withModes(es, modes), Options{Modes: modes}},
		{"diff-empty.golden", FormatDiff, nil, Options{}},
		{"json-empty.golden", FormatJSON, nil, Options{}},
		{"markdown-empty.golden", FormatMarkdown, nil, Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, tt.format, tt.entries, tt.opts); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, buf.Bytes())
		})
	}
}

func withModes(es []Entry, modes map[string]string) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		e.Mode = modes[e.Namespace]
		out[i] = e
	}
	return out
}

func TestChanged(t *testing.T) {
	es := fixtureEntries(t)
	if !Changed(es) {
		t.Error("fixture has rewrites but Changed is false")
	}
	if Changed(nil) {
		t.Error("Changed(nil) is true")
	}
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"diff", "json", "markdown"} {
		if _, err := ParseFormat(s); err != nil {
			t.Errorf("ParseFormat(%q) = %v", s, err)
		}
	}
	if _, err := ParseFormat("yaml"); err == nil {
		t.Error("ParseFormat(yaml) accepted")
	}
}
