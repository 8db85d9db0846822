// Package admission is hubcache's Pod mutating webhook: it runs the pure rewrite plan on each
// admitted Pod and either patches the images (mode enabled) or only reports, through admission
// warnings and audit annotations, what it would have changed (mode dry-run).
//
// The mode reaches the webhook through the path the API server calls: the
// MutatingWebhookConfiguration has one entry per mode, each with its own namespaceSelector, so
// admission never asks the API server anything.
package admission

// Mode says what the webhook does with a Pod whose images would be rewritten. Its values are
// those of the namespace label hubcache.io/mode (contract).
type Mode string

const (
	// ModeEnabled rewrites images with a JSONPatch.
	ModeEnabled Mode = "enabled"
	// ModeDryRun changes nothing and returns one warning per would-be rewrite.
	ModeDryRun Mode = "dry-run"
)

// Paths the API server calls, one per mode (contract).
const (
	PathMutate = "/mutate-v1-pod"
	PathDryRun = "/dry-run-v1-pod"
)

// Path returns the URL path that serves mode m.
func (m Mode) Path() string {
	if m == ModeDryRun {
		return PathDryRun
	}
	return PathMutate
}

// Audit annotation keys. The API server prefixes them with the webhook's name, so the audit
// log shows e.g. "enabled.hubcache.io/rewritten".
const (
	auditRewritten    = "rewritten"
	auditWouldRewrite = "would-rewrite"
	// auditKept lists the images of a Pod with imagePullSecrets left alone because the
	// cache does not serve their repository (private-repository) or did not say
	// (visibility-unknown).
	auditKept = "kept"
)
