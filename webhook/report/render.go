package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// Format names an output format of `hubcache diff`.
type Format string

const (
	FormatDiff     Format = "diff"
	FormatJSON     Format = "json"
	FormatMarkdown Format = "markdown"
)

// ParseFormat accepts diff, json or markdown.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatDiff, FormatJSON, FormatMarkdown:
		return f, nil
	}
	return "", fmt.Errorf("unknown output format %q: want diff, json or markdown", s)
}

// Options tune the rendering.
type Options struct {
	// Color adds ANSI colours to the diff (the CLI sets it when stdout is a terminal).
	Color bool
	// Modes maps namespace to its hubcache.io/mode label; nil when not reading a cluster.
	Modes map[string]string
}

// Write renders es in format f.
func Write(w io.Writer, f Format, es []Entry, opts Options) error {
	switch f {
	case FormatJSON:
		return WriteJSON(w, es)
	case FormatMarkdown:
		return WriteMarkdown(w, es, opts.Modes)
	case FormatDiff:
		return WriteDiff(w, es, opts.Color)
	}
	return fmt.Errorf("unknown output format %q", f)
}

// WriteJSON writes es as an indented JSON array, "[]" when there are none.
func WriteJSON(w io.Writer, es []Entry) error {
	if es == nil {
		es = []Entry{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(es); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// object identifies one manifest object; entries of one object are reported together.
type object struct{ kind, namespace, name string }

func (o object) path() string {
	if o.namespace == "" {
		return o.kind + "/" + o.name
	}
	return o.namespace + "/" + o.kind + "/" + o.name
}

// groupByObject keeps the order in which objects first appear.
func groupByObject(es []Entry) ([]object, map[object][]Entry) {
	var order []object
	groups := map[object][]Entry{}
	for _, e := range es {
		o := object{e.Kind, e.Namespace, e.Name}
		if _, seen := groups[o]; !seen {
			order = append(order, o)
		}
		groups[o] = append(groups[o], e)
	}
	return order, groups
}

const (
	ansiBold  = "\x1b[1m"
	ansiRed   = "\x1b[31m"
	ansiGreen = "\x1b[32m"
	ansiCyan  = "\x1b[36m"
	ansiReset = "\x1b[0m"
)

// imageLine is how one container's image appears in the diff.
// An image with blanks or control characters (only ever an invalid one) is quoted so it
// cannot break the diff's line structure.
func imageLine(e Entry, image string) string {
	if strings.IndexFunc(image, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 || image == "" {
		image = strconv.Quote(image)
	}
	return fmt.Sprintf("%ss[%s].image: %s", e.ContainerType, e.Container, image)
}

// WriteDiff writes, for every object with at least one rewritten image, a unified diff of
// its image lines: the images left alone are context, each run of rewritten images is the
// old lines then the new ones. Objects with nothing to change are not shown.
func WriteDiff(w io.Writer, es []Entry, color bool) error {
	bw := bufio.NewWriter(w)
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	order, groups := groupByObject(es)
	for _, o := range order {
		g := groups[o]
		if !Changed(g) {
			continue
		}
		fmt.Fprintln(bw, paint(ansiBold, "--- a/"+o.path()))
		fmt.Fprintln(bw, paint(ansiBold, "+++ b/"+o.path()))
		fmt.Fprintln(bw, paint(ansiCyan, fmt.Sprintf("@@ -1,%d +1,%d @@", len(g), len(g))))
		for i := 0; i < len(g); {
			if !g[i].Changed() {
				fmt.Fprintln(bw, " "+imageLine(g[i], g[i].Original))
				i++
				continue
			}
			j := i
			for j < len(g) && g[j].Changed() {
				j++
			}
			for _, e := range g[i:j] {
				fmt.Fprintln(bw, paint(ansiRed, "-"+imageLine(e, e.Original)))
			}
			for _, e := range g[i:j] {
				fmt.Fprintln(bw, paint(ansiGreen, "+"+imageLine(e, e.Rewritten)))
			}
			i = j
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing diff: %w", err)
	}
	return nil
}

// summary counts one namespace's decisions.
type summary struct {
	rewrite, already int
	alone            map[rewrite.Reason]int
}

// WriteMarkdown writes a summary per namespace (would rewrite, already rewritten, left
// alone by reason; the hubcache.io/mode label when modes is not nil) and then a table of
// every image.
func WriteMarkdown(w io.Writer, es []Entry, modes map[string]string) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# hubcache diff")
	fmt.Fprintln(bw)
	if len(es) == 0 {
		fmt.Fprintln(bw, "No container images found.")
		return flush(bw)
	}
	sums := map[string]*summary{}
	for _, e := range es {
		s := sums[e.Namespace]
		if s == nil {
			s = &summary{alone: map[rewrite.Reason]int{}}
			sums[e.Namespace] = s
		}
		switch {
		case e.Changed():
			s.rewrite++
		case e.Reason == rewrite.ReasonAlreadyRewritten:
			s.already++
		default:
			s.alone[e.Reason]++
		}
	}
	namespaces := make([]string, 0, len(sums))
	for ns := range sums {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)

	fmt.Fprintln(bw, "## Summary")
	fmt.Fprintln(bw)
	if modes != nil {
		fmt.Fprintln(bw, "| Namespace | Mode | Would rewrite | Already rewritten | Left alone |")
		fmt.Fprintln(bw, "|---|---|---:|---:|---|")
	} else {
		fmt.Fprintln(bw, "| Namespace | Would rewrite | Already rewritten | Left alone |")
		fmt.Fprintln(bw, "|---|---:|---:|---|")
	}
	for _, ns := range namespaces {
		s := sums[ns]
		cells := []string{namespaceCell(ns)}
		if modes != nil {
			mode := modes[ns]
			if mode == "" {
				mode = "(no label)"
			}
			cells = append(cells, cell(mode))
		}
		cells = append(cells, fmt.Sprint(s.rewrite), fmt.Sprint(s.already), aloneCell(s.alone))
		fmt.Fprintln(bw, "| "+strings.Join(cells, " | ")+" |")
	}
	fmt.Fprintln(bw)
	fmt.Fprintln(bw, "## Images")
	fmt.Fprintln(bw)
	fmt.Fprintln(bw, "| Namespace | Object | Container | Original | Rewritten | Reason |")
	fmt.Fprintln(bw, "|---|---|---|---|---|---|")
	for _, e := range es {
		reason := string(e.Reason)
		if e.Detail != "" {
			reason += ": " + e.Detail
		}
		fmt.Fprintf(bw, "| %s | %s | %s | %s | %s | %s |\n",
			namespaceCell(e.Namespace), cell(e.Kind+"/"+e.Name),
			cell(fmt.Sprintf("%s (%s)", e.Container, e.ContainerType)),
			code(e.Original), code(e.Rewritten), cell(reason))
	}
	return flush(bw)
}

func flush(bw *bufio.Writer) error {
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing markdown: %w", err)
	}
	return nil
}

func aloneCell(alone map[rewrite.Reason]int) string {
	if len(alone) == 0 {
		return "0"
	}
	reasons := make([]rewrite.Reason, 0, len(alone))
	for r := range alone {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	parts := make([]string, 0, len(reasons))
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%s: %d", r, alone[r]))
	}
	return strings.Join(parts, ", ")
}

func namespaceCell(ns string) string {
	if ns == "" {
		return "(not set)"
	}
	return code(ns)
}

// cell escapes what would break a table row.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.Join(strings.Fields(s), " ")
}

// code renders s as inline code when it can be, as an escaped cell otherwise.
func code(s string) string {
	if s == "" {
		return ""
	}
	if strings.ContainsAny(s, "`|\\\n\r") || strings.TrimSpace(s) != s {
		return cell(s)
	}
	return "`" + s + "`"
}
