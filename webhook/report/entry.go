// Package report turns rewrite decisions over manifests or a live cluster into the reports of
// `hubcache diff`: a unified diff, JSON and Markdown.
package report

import (
	"github.com/hubcache/hubcache/webhook/manifest"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

// Entry is one container image of one object and what the plan decided for it.
// JSON keys (contract): kind, namespace, name, container, containerType, original,
// rewritten ("" when not rewritten), reason; detail and mode only when set.
type Entry struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	rewrite.Decision
	// Mode is the namespace's hubcache.io/mode label, known only for a live cluster.
	Mode string `json:"mode,omitempty"`
}

// Entries runs the plan over every workload, in order.
func Entries(ws []manifest.Workload, p rewrite.Policy) []Entry {
	out := []Entry{}
	for _, w := range ws {
		for _, d := range rewrite.Plan(w.Annotations, w.Spec, p) {
			out = append(out, Entry{Kind: w.Kind, Namespace: w.Namespace, Name: w.Name, Decision: d})
		}
	}
	return out
}

// Changed reports whether any entry would rewrite an image: the exit status of diff.
func Changed(es []Entry) bool {
	for _, e := range es {
		if e.Changed() {
			return true
		}
	}
	return false
}
