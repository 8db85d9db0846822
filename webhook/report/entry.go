// Package report turns rewrite decisions over manifests or a live cluster into the reports of
// `hubcache diff`: a unified diff, JSON and Markdown.
package report

import (
	"context"
	"errors"

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

// Entries runs the plan over every workload, in order. Nobody asked the cache about
// visibility: the images of pods with imagePullSecrets say visibility-unchecked.
func Entries(ws []manifest.Workload, p rewrite.Policy) []Entry {
	return entries(ws, p, rewrite.Visibilities{})
}

// Lookup asks the cache which Docker Hub repositories it serves (at most
// visibility.MaxRepositories per call); a repository missing from the answer is unknown.
type Lookup func(ctx context.Context, repositories []string) (map[string]rewrite.RepositoryVisibility, error)

// CheckedEntries runs the plan as a webhook with --proxy does: the repositories of pods
// with imagePullSecrets are asked about first (in batches of batch), and their images are
// rewritten only when the cache serves them. A failed question leaves its repositories
// unknown, as in the webhook; the error is returned with the entries, for a warning.
func CheckedEntries(ctx context.Context, ws []manifest.Workload, p rewrite.Policy, lookup Lookup, batch int) ([]Entry, error) {
	var questions []string
	seen := map[string]bool{}
	for _, w := range ws {
		for _, r := range rewrite.VisibilityQuestions(w.Annotations, w.Spec, p) {
			if !seen[r] {
				seen[r] = true
				questions = append(questions, r)
			}
		}
	}
	v := rewrite.Visibilities{Checked: true, Answers: map[string]rewrite.RepositoryVisibility{}}
	var errs []error
	for start := 0; start < len(questions); start += batch {
		got, err := lookup(ctx, questions[start:min(start+batch, len(questions))])
		if err != nil {
			errs = append(errs, err)
		}
		for r, a := range got {
			v.Answers[r] = a
		}
	}
	return entries(ws, p, v), errors.Join(errs...)
}

func entries(ws []manifest.Workload, p rewrite.Policy, v rewrite.Visibilities) []Entry {
	out := []Entry{}
	for _, w := range ws {
		for _, d := range rewrite.PlanWith(w.Annotations, w.Spec, p, v) {
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
