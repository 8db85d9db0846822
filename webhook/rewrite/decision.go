// Package rewrite decides, with no I/O, which Pod image references move to the cache and why.
// The webhook, the dry-run diff CLI and the reports all use Plan: one source of truth.
package rewrite

// ContainerType says which list of the pod spec a container belongs to (contract: these
// strings appear in JSON reports).
type ContainerType string

const (
	Container          ContainerType = "container"
	InitContainer      ContainerType = "initContainer"
	EphemeralContainer ContainerType = "ephemeralContainer"
)

// Reason says why an image was or was not rewritten (contract: these strings appear in JSON
// reports and admission warnings).
type Reason string

const (
	ReasonRewritten        Reason = "rewritten"
	ReasonAlreadyRewritten Reason = "already-rewritten"
	ReasonOtherRegistry    Reason = "not-docker-hub"
	ReasonInvalid          Reason = "invalid-reference"
	ReasonTooLong          Reason = "name-too-long"
	ReasonExcluded         Reason = "excluded"
	ReasonPodSkipped       Reason = "pod-skipped"
	// ReasonPrivate: the pod has imagePullSecrets and the cache does not serve the
	// repository (private on Docker Hub, not allow-listed); the kubelet pulls it with the
	// secret from Docker Hub.
	ReasonPrivate Reason = "private-repository"
	// ReasonVisibilityUnknown: the pod has imagePullSecrets and the cache gave no answer
	// in time (or "unknown"), so the image is left alone rather than risk a failed pull.
	ReasonVisibilityUnknown Reason = "visibility-unknown"
	// ReasonVisibilityUnchecked: the pod has imagePullSecrets and nobody asked the cache
	// (no --proxy): the image is rewritten, but a private one would fail to pull.
	ReasonVisibilityUnchecked Reason = "visibility-unchecked"
)

// Decision is what Plan decided for one container image.
type Decision struct {
	Container     string        `json:"container"`
	ContainerType ContainerType `json:"containerType"`
	Original      string        `json:"original"`
	// Rewritten is the new reference, or "" when the image is left alone.
	Rewritten string `json:"rewritten"`
	Reason    Reason `json:"reason"`
	// Detail explains the reason in words (for example the parse error of an invalid reference).
	Detail string `json:"detail,omitempty"`
}

// Changed reports whether the decision rewrites the image.
func (d Decision) Changed() bool { return d.Rewritten != "" && d.Rewritten != d.Original }

// Annotations and labels (contract).
const (
	// AnnotationSkip on a pod ("true") leaves all of its images alone.
	AnnotationSkip = "hubcache.io/skip"
	// AnnotationOriginalImages records, as a JSON object of container name to image, the
	// references that were rewritten.
	AnnotationOriginalImages = "hubcache.io/original-images"
	// LabelMode on a namespace selects "enabled" or "dry-run".
	LabelMode = "hubcache.io/mode"
	// DefaultTarget is where rewritten references point: the node-local entry point.
	DefaultTarget = "127.0.0.1:5000"
)
